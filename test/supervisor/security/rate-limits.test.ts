// Rate limits over real sockets and a real in-process plane: a node over its message rate is
// answered rate_limited (non-fatal) and its frames dropped while other nodes go on; one that keeps
// on is closed and its address banned for banSeconds; an address over its failed-registration or
// connection budget is refused, then banned; an admin API token over its request rate gets 429.
// All clients come from 127.0.0.1, so per-node limits and bans are each tested on a plane of
// their own (a ban of 127.0.0.1 would shut out every client of the test).
import { afterEach, describe, expect, it } from 'vitest';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { encodeFrame } from '../../../protocol/frame-encoder.js';
import { CODEC_JSON, encodeBody } from '../../../protocol/codec.js';
import { heartbeatMessage, registerNodeMessage, type NodeClient } from '../node-client.js';
import { refusedAtOnce, startSecurityPlane, until, type HttpAnswer, type SecurityPlane } from '../security-plane.js';

let running: SecurityPlane | undefined;

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function start(overrides: Record<string, string | number | boolean>, withAudit = false): Promise<SecurityPlane> {
  running = await startSecurityPlane(overrides, { withAudit });
  return running;
}

async function registered(p: SecurityPlane): Promise<NodeClient> {
  const c = await p.client();
  await c.register({ token: await p.registrationToken() });
  return c;
}

/** `count` heartbeats of `c`'s node as one write. */
function heartbeats(c: NodeClient, count: number): Buffer {
  const frame = encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, heartbeatMessage(c.nodeId as string)));
  return Buffer.concat(Array.from({ length: count }, () => frame));
}

/**
 * Sends a frame the plane answers (an unknown type with an id) and returns the answer's code,
 * or `dropped` when no answer came within `timeoutMs` (a frame over the rate is not answered).
 */
async function probe(c: NodeClient, id: string, timeoutMs = 5_000): Promise<string> {
  c.send({ type: 'Probe', id, data: {} });
  for (;;) {
    const answer = await c.next('Error', timeoutMs).catch(() => undefined);
    if (answer === undefined) return 'dropped';
    if (answer.message.reply_to === id) return answer.message.data.code;
  }
}

const badToken = (): Promise<string> =>
  new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!')).mintRegistrationToken({ ttlSeconds: 600 });

describe('per-node message rate', () => {
  it('drops frames over the rate with one rate_limited answer, keeps the node, and leaves other nodes alone', async () => {
    const p = await start({ nodeMessageRate: 20, nodeMessageBurst: 40, banAfterViolations: 0 });
    const flooder = await registered(p);
    const bystander = await registered(p);

    flooder.sendRaw(heartbeats(flooder, 500));
    const error = await flooder.next('Error');
    expect(error.message.data).toMatchObject({ code: 'rate_limited', fatal: false });

    // The bystander, on the same address but with buckets of its own, is answered as usual.
    expect(await probe(bystander, 'b-1')).toBe('unknown_type');
    expect(bystander.unread().filter((r) => r.message.type === 'Error')).toEqual([]);

    // 460 frames were dropped, but the flooder heard about it at most once a second, not 460 times.
    await until('the flood is handled', async () => (await p.plane.api.stats()).total_messages_received >= 500);
    const answers = flooder.unread().filter((r) => r.message.type === 'Error' && r.message.data.code === 'rate_limited');
    expect(answers.length).toBeLessThanOrEqual(2);

    // rate_limited is not fatal: once its bucket refills the flooder is served again.
    expect(flooder.isClosed).toBe(false);
    let probes = 0;
    await until('the flooder is served again', async () => (await probe(flooder, `f-${probes++}`, 300)) === 'unknown_type');
    const states = p.plane.api.listNodes().map((n) => n.state);
    expect(states).toEqual(['ready', 'ready']);
  });

  it('drops frames over the byte rate', async () => {
    const p = await start({ nodeByteRate: 1_000, nodeByteBurst: 1_000, maxFrameBytes: 1_000, banAfterViolations: 0 });
    const c = await registered(p);
    c.sendRaw(heartbeats(c, 20)); // ~300 bytes each
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'rate_limited', fatal: false });
  });

  it('closes a node that keeps flooding and bans its address until banSeconds have passed', async () => {
    const p = await start({ nodeMessageRate: 20, nodeMessageBurst: 20, banAfterViolations: 2, banSeconds: 3 }, true);
    const flooder = await registered(p);
    const batch = heartbeats(flooder, 100);
    const flood = setInterval(() => {
      if (!flooder.isClosed) flooder.sendRaw(batch);
    }, 50);
    try {
      const first = await flooder.next('Error');
      expect(first.message.data).toMatchObject({ code: 'rate_limited', fatal: false });
      const last = await flooder.next('Error', 10_000);
      expect(last.message.data.code).toBe('rate_limited');
      expect(last.message.data.message).toMatch(/banned for \d+ s/);
      await flooder.closedWithin(10_000);
    } finally {
      clearInterval(flood);
    }

    // Banned: a new connection from the address is refused before it says anything, valid token or not.
    const refused = await refusedAtOnce(await p.client());
    expect(refused.code).toBe('rate_limited');
    expect(refused.message).toMatch(/banned/);
    expect(p.auditLines().filter((l) => l.event === 'address_banned')).toMatchObject([{ address: '127.0.0.1' }]);

    // The ban ends: the address may register again.
    await until(
      'the ban is over',
      async () => {
        const c = await p.client();
        c.send(registerNodeMessage({ token: await p.registrationToken() }));
        const answer = await c.next();
        c.destroy();
        return answer.message.type === 'RegisterAck';
      },
      15_000,
    );
  });
});

describe('per-address limits', () => {
  it('refuses an address over its failed-registration budget, then bans it (its API requests too)', async () => {
    const p = await start({ failedAuthPerMinute: 3, banAfterViolations: 2, banSeconds: 60 });
    for (let i = 0; i < 3; i++) {
      const c = await p.client();
      c.send(registerNodeMessage({ token: await badToken() }));
      expect((await c.next('Error')).message.data.code).toBe('auth_failed');
      await c.closedWithin();
    }
    const overBudget = await refusedAtOnce(await p.client());
    expect(overBudget).toMatchObject({ code: 'rate_limited', fatal: false });
    expect(overBudget.message).toMatch(/failed registrations/);

    // The second violation within the minute bans the address.
    const banning = await refusedAtOnce(await p.client());
    expect(banning.message).toMatch(/banned for 60 s/);
    const banned = await refusedAtOnce(await p.client());
    expect(banned.message).toMatch(/banned/);

    const api = await p.http('GET', '/v1/nodes', await p.apiToken('viewer'));
    expect(api.status).toBe(429);
    expect(api.json).toMatchObject({ error: { code: 'rate_limited' } });
    expect(Number(api.headers.get('retry-after'))).toBeGreaterThan(50);
  });

  it('counts bad admin API tokens against the same budget', async () => {
    const p = await start({ failedAuthPerMinute: 3, banAfterViolations: 0 });
    // Requests with no token at all guessed nothing: they do not count.
    for (let i = 0; i < 10; i++) expect((await p.http('GET', '/v1/nodes')).status).toBe(401);
    expect((await p.http('GET', '/healthz')).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await p.http('GET', '/v1/nodes', 'not-a-token')).status).toBe(401);
    const refused = await p.http('GET', '/v1/nodes', await p.apiToken('viewer'));
    expect(refused.status).toBe(429);
    await expect(refusedAtOnce(await p.client())).resolves.toMatchObject({ code: 'rate_limited' });
  });

  it('refuses connection attempts over the per-address rate at once, with no probation', async () => {
    const p = await start({ connectionRate: 0.1, connectionBurst: 3, banAfterViolations: 0, connectionProbation: 0 });
    for (let i = 0; i < 3; i++) await registered(p);
    const refused = await refusedAtOnce(await p.client());
    expect(refused).toMatchObject({ code: 'rate_limited', fatal: false });
    expect(p.plane.api.listNodes()).toHaveLength(3);
  });

  it('over the per-address rate, lets a session resume but refuses a new registration and a bad token', async () => {
    const p = await start({ connectionRate: 0.1, connectionBurst: 3, banAfterViolations: 0 });
    const nodes = [await registered(p), await registered(p), await registered(p)];
    const fresh = await p.client();
    await expect(fresh.register({ token: await p.registrationToken() })).rejects.toThrow(/rate_limited/);
    const forged = await p.client();
    await expect(forged.register({ token: await badToken(), resume: { node_id: nodes[0]!.nodeId!, running_jobs: [], unacked_results: [] } })).rejects.toThrow();
    for (const node of nodes) {
      const again = await p.client();
      const ack = await again.register({ token: node.sessionToken!, resume: { node_id: node.nodeId!, running_jobs: [], unacked_results: [] } });
      expect(ack.data).toMatchObject({ node_id: node.nodeId, resumed: true });
    }
    expect(p.plane.api.listNodes()).toHaveLength(3);
  });
});

describe('per-token admin API rate', () => {
  it('answers 429 rate_limited to a token over its rate, and not to another token', async () => {
    const p = await start({ apiRequestRate: 0.5, apiRequestBurst: 5 });
    const busy = await p.apiToken('viewer');
    const answers: HttpAnswer[] = [];
    for (let i = 0; i < 10; i++) answers.push(await p.http('GET', '/v1/nodes', busy));
    expect(answers.slice(0, 5).map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const limited = answers.find((a) => a.status === 429);
    if (limited === undefined) throw new Error(`no 429 among ${answers.map((a) => a.status).join(', ')}`);
    expect(limited.json).toMatchObject({ error: { code: 'rate_limited' } });
    expect(limited.headers.get('retry-after')).toBe('1');
    expect((await p.http('GET', '/v1/nodes', await p.apiToken('viewer'))).status).toBe(200);
  });
});
