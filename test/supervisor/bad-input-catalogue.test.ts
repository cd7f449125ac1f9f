// The catalogue of bad input (security issue): every error code of PROTOCOL.md section 4 and
// forged tokens of every kind, each sent over a real socket to a real in-process plane and
// answered with its code and `fatal` flag; a fatal answer closes the connection, a non-fatal one
// keeps it, and no answer repeats the token. On each plane a healthy bystander node stays
// connected throughout: after every row it is still `ready`, its heartbeats are taken, it was
// sent nothing, and at the end it is given a job and completes it (section 4 rule 10).
// Three planes: a plain one with a key set (Ed25519 + P-256) so that the alg-confusion and kid
// cases meet real keys; one with payload encryption; one with TLS, a Unix socket, an allow-list
// without loopback and a small message rate, which is then shut down.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Packr } from 'msgpackr';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { ERROR_CODES, type ErrorCode } from '../../protocol/errors.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { toNewJob } from '../../supervisor/admin/job-request.js';
import { DEFAULTS } from '../../supervisor/config.js';
import { JobCoordinator } from '../../supervisor/jobs/job-coordinator.js';
import { PayloadCipher } from '../../transports/payload-cipher.js';
import type { ProtocolClient } from '../conformance/protocol-client.js';
import * as links from './bad-input-links.js';
import { heartbeatMessage, NodeClient, registerNodeMessage, type RegisterOptions } from './node-client.js';
import { SECRET, startSecurityPlane, until, type SecurityPlane } from './security-plane.js';

const OTHER_SECRET = new TextEncoder().encode('a-secret-this-plane-never-heard-of-0123');
/** Short, so that the register_timeout row takes a second. */
const REGISTER_TIMEOUT_MS = 1_000;
/** How often bystanders heartbeat: well inside every plane's rates. */
const BYSTANDER_BEAT_MS = 250;
const ENCRYPTION_KEY = randomBytes(32);

/** What a row provoked: the link that must get the Error, and what the answer must (not) carry. */
interface Provoked {
  link: links.Link;
  replyTo?: string;
  field?: string;
  /** Text that must not appear in the answer: the token (and each part of it), an injected failure. */
  secret?: string;
  /** For a non-fatal row: shows the connection still served; default a Heartbeat taken. */
  kept?: () => Promise<void>;
}

interface Row {
  code: ErrorCode;
  /** As PROTOCOL.md's table says, written out rather than read from the code under test. */
  fatal: boolean;
  what: string;
  provoke: () => Promise<Provoked>;
}

const covered = new Set<ErrorCode>();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-catalogue-'));
/** Clients a row opened; closed after it. */
const opened: (NodeClient | ProtocolClient)[] = [];

function track<T extends NodeClient | ProtocolClient>(c: T): T {
  opened.push(c);
  return c;
}

/** Runs `row` and checks the answer and what became of the connection. */
async function expectAnswered(row: Row, plane: SecurityPlane['plane']): Promise<void> {
  covered.add(row.code);
  const { link, replyTo, field, secret, kept } = await row.provoke();
  const error = await link.next('Error');
  expect(error.message.data).toMatchObject({ code: row.code, fatal: row.fatal });
  if (replyTo !== undefined) expect(error.message.reply_to).toBe(replyTo);
  if (field !== undefined) expect(error.message.data.field).toBe(field);
  const answer = JSON.stringify(error.message);
  for (const part of [secret ?? '', ...(secret ?? '').split('.')]) if (part.length > 8) expect(answer).not.toContain(part);
  if (row.fatal) {
    await link.closedWithin();
    expect(link.unread()).toEqual([]);
  } else {
    await (kept ?? (() => links.heartbeatTaken(plane, link)))();
    expect(link.isClosed).toBe(false);
  }
}

const METRICS = { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 };

/** A `JobResult`'s `result` that completed with `stdout`. */
function jobOutcome(stdout: string): Record<string, unknown> {
  const now = new Date().toISOString();
  return { status: 'Completed', exit_code: 0, stdout, stderr: '', artifacts: [], started_at: now, completed_at: now };
}

/** Length and codec byte of a frame header, without a body. */
function header(length: number, codecByte?: number): Buffer {
  const bytes = Buffer.alloc(codecByte === undefined ? 4 : 5);
  bytes.writeUInt32BE(length, 0);
  if (codecByte !== undefined) bytes[4] = codecByte;
  return bytes;
}

afterEach(() => {
  vi.restoreAllMocks();
  for (const c of opened.splice(0)) void (c instanceof NodeClient ? c.destroy() : c.close());
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
  // Every code of the protocol's table has a row (shutting_down: the last test), but for those
  // of a wire feature this plane does not turn on yet: no node can provoke them.
  const notYet = new Set<string>([]);
  expect([...covered].sort()).toEqual(Object.keys(ERROR_CODES).filter((code) => !notYet.has(code)).sort());
});

describe('a plain plane with a key set (HS256 secret, Ed25519 and P-256 keys)', () => {
  let p: SecurityPlane;
  let bystander: NodeClient;
  let ed: links.SetKey;
  let es: links.SetKey;
  let stranger: links.SetKey;

  beforeAll(async () => {
    [ed, es, stranger] = await Promise.all([links.setKey('EdDSA', 'ed-1'), links.setKey('ES256', 'es-1'), links.setKey('ES256', 'es-1')]);
    const jwks = path.join(dir, 'jwks.json');
    fs.writeFileSync(jwks, JSON.stringify({ keys: [ed.publicJwk, es.publicJwk] }));
    // Refusals come many a minute from one address here: the failed-auth budget and bans are off.
    const limitsOff = { failedAuthPerMinute: 0, banAfterViolations: 0 };
    p = await startSecurityPlane({ jwtJwks: jwks, registerTimeoutMs: REGISTER_TIMEOUT_MS, ...limitsOff }, { withAudit: true });
    bystander = await p.client();
    await bystander.register({ token: await p.registrationToken(), hostname: 'bystander.example.test' });
    bystander.startHeartbeats(BYSTANDER_BEAT_MS);
  });

  afterEach(async () => links.unharmed(p.plane, bystander));
  afterAll(async () => p?.stop());

  const fresh = async (): Promise<NodeClient> => track(await p.client());
  const registered = async (): Promise<NodeClient> => {
    const c = await fresh();
    await c.register({ token: await p.registrationToken() });
    return c;
  };
  /** A fresh connection whose RegisterNode carries `token`. */
  const presenting = async (token: string, o: Partial<RegisterOptions> = {}): Promise<Provoked> => {
    const c = await fresh();
    c.send(registerNodeMessage({ token, id: 'reg-bad', ...o }));
    return { link: c, replyTo: 'reg-bad', secret: token };
  };
  const hs256 = (claims: JWTPayload, kid?: string, key: Uint8Array = new TextEncoder().encode(SECRET)): Promise<string> =>
    links.forged(claims, { alg: 'HS256', ...(kid === undefined ? {} : { kid }) }, key);
  const now = (): number => Math.floor(Date.now() / 1000);

  it('accepts EdDSA and ES256 tokens signed by the keys of its set (the forgeries below meet real keys)', async () => {
    for (const key of [ed, es]) {
      const token = await links.forged(links.registerClaims(), { alg: key.alg, kid: key.kid }, key.privateKey);
      await (await fresh()).register({ token });
    }
  });

  const frameRows: Row[] = [
    { code: 'malformed_frame', fatal: true, what: 'a frame of length 0', provoke: async () => {
      const c = await fresh();
      c.sendRaw(header(0));
      return { link: c };
    } },
    { code: 'malformed_frame', fatal: true, what: 'a body that is not JSON, from a registered node', provoke: async () => {
      const c = await registered();
      c.sendFrame(CODEC_JSON, Buffer.from('{"type": "Heartbeat", "data": '));
      return { link: c };
    } },
    { code: 'frame_too_large', fatal: true, what: 'a header announcing max_frame_bytes + 1, with no body', provoke: async () => {
      const c = await fresh();
      c.sendRaw(header(p.config.maxFrameBytes + 1));
      return { link: c };
    } },
    { code: 'unsupported_codec', fatal: true, what: 'codec byte 0x07', provoke: async () => {
      const c = await fresh();
      c.sendFrame(0x07, encodeBody(CODEC_JSON, registerNodeMessage({ token: 'x' })));
      return { link: c };
    } },
    { code: 'not_registered', fatal: true, what: 'a Heartbeat before RegisterNode', provoke: async () => {
      const c = await fresh();
      c.send(heartbeatMessage(randomUUID(), 'Ready', 'hb-1'));
      return { link: c, replyTo: 'hb-1' };
    } },
    { code: 'register_timeout', fatal: true, what: 'silence after connecting', provoke: async () => ({ link: await fresh() }) },
    { code: 'unsupported_version', fatal: true, what: 'a RegisterNode offering only protocol version 3', provoke: async () => {
      const c = await fresh();
      c.send(registerNodeMessage({ token: await p.registrationToken(), protocolVersions: [3], id: 'reg-v3' }));
      return { link: c, replyTo: 'reg-v3', field: 'data.protocol_versions' };
    } },
    { code: 'unknown_type', fatal: false, what: 'a type this version does not know', provoke: async () => {
      const c = await registered();
      c.send({ type: 'Telemetry', id: 't-1', data: {} });
      return { link: c, replyTo: 't-1' };
    } },
    { code: 'invalid_message', fatal: false, what: 'a Heartbeat without status', provoke: async () => {
      const c = await registered();
      const hb = heartbeatMessage(c.nodeId!, 'Ready', 'hb-2') as unknown as { data: Record<string, unknown> };
      delete hb.data.status;
      c.send(hb);
      return { link: c, replyTo: 'hb-2', field: 'data.status' };
    } },
    { code: 'session_replaced', fatal: true, what: 'the node resuming on a second connection (to the first)', provoke: async () => {
      const first = await registered();
      const resume = { node_id: first.nodeId!, running_jobs: [], unacked_results: [] };
      await (await fresh()).register({ token: first.sessionToken!, resume });
      return { link: first };
    } },
    { code: 'artifact_rejected', fatal: false, what: 'an ArtifactChunk for no upload under way, on a session with artifacts', provoke: async () => {
      const c = await fresh();
      await c.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: ['artifacts'] });
      c.send({ type: 'ArtifactChunk', id: 'chunk-1', data: { artifact_id: randomUUID(), offset: 0, data: 'aGVsbG8=' } });
      return { link: c, replyTo: 'chunk-1', field: 'data.artifact_id' };
    } },
    // The plane's own fault cannot be provoked from outside without a bug to aim at: the fault is
    // injected where supervision.test.ts does, for this node only. A failure that throws
    // synchronously closes the connection; supervision.test.ts covers that case.
    { code: 'internal', fatal: false, what: 'a job message whose handling fails in the plane (injected)', provoke: async () => {
      const c = await registered();
      const original = JobCoordinator.prototype.handle;
      const failure = 'injected failure: disk full at /var/lib/muster';
      vi.spyOn(JobCoordinator.prototype, 'handle').mockImplementation(function (this: JobCoordinator, session, id, message) {
        return id === c.nodeId ? Promise.reject(new Error(failure)) : original.call(this, session, id, message);
      });
      c.send({ type: 'JobAccepted', id: 'acc-1', data: { job_id: randomUUID(), attempt: 1 } });
      return { link: c, replyTo: 'acc-1', secret: failure };
    } },
  ];

  /** A row whose RegisterNode carries the token `make` builds; every token refusal is fatal. */
  const refusing = (code: ErrorCode, what: string, make: () => Promise<string>, o: Partial<RegisterOptions> = {}): Row => ({
    code,
    fatal: true,
    what,
    provoke: async () => presenting(await make(), o),
  });
  const claims = links.registerClaims;
  const pem = (key: links.SetKey): Uint8Array => new TextEncoder().encode(key.publicPem);

  const tokenRows: Row[] = [
    refusing('auth_failed', 'HS256 signed with another secret', () => hs256(claims(), undefined, OTHER_SECRET)),
    refusing('auth_failed', 'alg none, unsigned', async () => links.unsigned(claims())),
    refusing('auth_failed', 'HS256 signed with the P-256 public key (PEM) of the set, its kid', () => hs256(claims(), es.kid, pem(es))),
    refusing('auth_failed', 'HS256 signed with the Ed25519 public key (PEM) of the set, no kid', () => hs256(claims(), undefined, pem(ed))),
    refusing('auth_failed', 'ES256 by a key outside the set, naming a kid of the set', () =>
      links.forged(claims(), { alg: 'ES256', kid: es.kid }, stranger.privateKey),
    ),
    refusing('auth_failed', 'EdDSA by the set’s own key under an unknown kid', () =>
      links.forged(claims(), { alg: 'EdDSA', kid: 'ed-404' }, ed.privateKey),
    ),
    refusing('auth_failed', 'kid ../../etc/passwd', () => hs256(claims(), '../../etc/passwd')),
    refusing('auth_failed', 'kid naming the key-set file by its path', () => hs256(claims(), path.join(dir, 'jwks.json'))),
    refusing('auth_failed', 'nbf an hour ahead', () => hs256(claims({ nbf: now() + 3600 }))),
    refusing('token_expired', 'exp two minutes ago, beyond the 30 s leeway', () => hs256(claims({ iat: now() - 900, exp: now() - 120 }))),
    refusing('auth_failed', 'wrong iss', () => hs256(claims({ iss: 'not-muster' }))),
    refusing('auth_failed', 'wrong aud (the admin API’s)', () => hs256(claims({ aud: 'muster-api' }))),
    refusing('auth_failed', 'wrong scope', () => hs256(claims({ scope: 'node:admin' }))),
    refusing('forbidden', 'a registration token bound to another hostname', () =>
      p.plane.tokens.mintRegistrationToken({ ttlSeconds: 600, sub: 'someone-else.example.test' }),
    ),
    { code: 'forbidden', fatal: true, what: 'another node’s session token in resume (naming the bystander)', provoke: async () => {
      const thief = await registered();
      return presenting(thief.sessionToken!, { resume: { node_id: bystander.nodeId!, running_jobs: [], unacked_results: [] } });
    } },
    refusing('token_revoked', 'a registration token whose jti was revoked', async () => {
      const token = await p.registrationToken();
      const revoked = await p.http('POST', `/v1/tokens/${String(decodeJwt(token).jti)}/revoke`, await p.apiToken('admin'), {});
      expect(revoked.status).toBe(200);
      return token;
    }),
  ];

  /**
   * A node (`holder`) that holds attempt 1 of a job only it matches (accepted when `running`),
   * and a second registered node (the forger) that will name that attempt.
   */
  async function holding(running: boolean): Promise<{ holder: NodeClient; forger: NodeClient; jobId: string }> {
    const tags = { catalogue: randomUUID() };
    const holder = await fresh();
    await holder.register({ token: await p.registrationToken(), hostname: 'holder.example.test', tags });
    const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags }, max_attempts: 1 }, p.plane.api.defaults));
    expect((await holder.next('JobAssignment')).message.data).toMatchObject({ job_id: job.job_id, attempt: 1 });
    if (running) {
      holder.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: 1 } });
      await until('the holder runs the job', async () => (await p.plane.api.getJob(job.job_id))?.state === 'Running');
    }
    return { holder, forger: await registered(), jobId: job.job_id };
  }

  /**
   * After the forgery: the holder's job is as it was (state, node, no result, no log, its slot
   * taken), the holder was sent nothing, the refusal is audited, and the holder then ends the
   * job itself with its own result.
   */
  async function untouched(holder: NodeClient, forger: NodeClient, jobId: string, state: 'Assigned' | 'Running', field: string): Promise<void> {
    await links.heartbeatTaken(p.plane, forger);
    const job = await p.plane.api.getJob(jobId);
    expect(job).toMatchObject({ state, attempt: 1, node_id: holder.nodeId });
    expect(job?.result).toBeUndefined();
    expect(await p.plane.api.jobLogs(jobId)).toEqual([]);
    expect(p.plane.api.listNodes().find((v) => v.node_id === holder.nodeId)?.running_jobs).toEqual([jobId]);
    expect(holder.unread()).toEqual([]);
    // The coordinator's refusal (data.job_id) is audited; the actor refuses a JobResult naming another node (data.node_id) before.
    const audited = p.auditLines().filter((l) => l.event === 'attempt_refused' && l.node_id === forger.nodeId);
    expect(audited).toMatchObject(field === 'data.job_id' ? [{ code: 'invalid_message', address: '127.0.0.1' }] : []);
    if (state === 'Assigned') holder.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 1 } });
    holder.send({ type: 'JobResult', id: 'own-1', data: { job_id: jobId, attempt: 1, node_id: holder.nodeId, result: jobOutcome('mine'), metrics: METRICS } });
    expect((await holder.next('JobResultAck')).message.data).toEqual({ job_id: jobId, attempt: 1 });
    expect(await p.plane.api.getJob(jobId)).toMatchObject({ state: 'Completed', node_id: holder.nodeId, result: { stdout: 'mine' } });
  }

  /** A row: the forger sends what `forge` builds for the holder's attempt, answered `invalid_message` on `field`. */
  const forgery = (
    what: string,
    running: boolean,
    forge: (jobId: string, holder: NodeClient, forger: NodeClient) => Record<string, unknown>,
    field = 'data.job_id',
  ): Row => ({
    code: 'invalid_message',
    fatal: false,
    what,
    provoke: async () => {
      const { holder, forger, jobId } = await holding(running);
      forger.send({ id: 'forged-1', ...forge(jobId, holder, forger) });
      const kept = (): Promise<void> => untouched(holder, forger, jobId, running ? 'Running' : 'Assigned', field);
      return { link: forger, replyTo: 'forged-1', field, kept };
    },
  });

  const forgedRows: Row[] = [
    forgery('a JobResult for another node’s running attempt', true, (job_id, _holder, forger) => ({
      type: 'JobResult',
      data: { job_id, attempt: 1, node_id: forger.nodeId, result: jobOutcome('forged'), metrics: METRICS },
    })),
    forgery(
      'a JobResult for another node’s running attempt, naming that node',
      true,
      (job_id, holder) => ({ type: 'JobResult', data: { job_id, attempt: 1, node_id: holder.nodeId, result: jobOutcome('forged'), metrics: METRICS } }),
      'data.node_id',
    ),
    forgery('a LogChunk for another node’s running attempt', true, (job_id) => ({
      type: 'LogChunk',
      data: { job_id, attempt: 1, stream: 'stdout', seq: 0, data: 'forged output' },
    })),
    forgery('a JobAccepted for another node’s assigned attempt', false, (job_id) => ({ type: 'JobAccepted', data: { job_id, attempt: 1 } })),
    forgery('a JobRejected for another node’s assigned attempt', false, (job_id) => ({
      type: 'JobRejected',
      data: { job_id, attempt: 1, reason: 'forged' },
    })),
  ];

  it.each(frameRows)('$code (fatal $fatal): $what', async (row) => expectAnswered(row, p.plane));
  it.each(forgedRows)('$code (fatal $fatal) for a job message from a node that does not hold the attempt: $what', async (row) =>
    expectAnswered(row, p.plane),
  );
  it.each(tokenRows)('$code (fatal $fatal) for a forged or misused token: $what', async (row) => expectAnswered(row, p.plane));

  // ---- Field bounds (issue 8 item 8): refused by size or shape, before the body is decoded ----
  /**
   * The trial's heartbeat: valid, with 110,000 extra keys in `data` (MessagePack: about 880 KB).
   * Its `id` comes before `data`: the plane answers it without reading on (an `id` after a
   * refused `data` is never read, and the answer then has no `reply_to`).
   */
  const abusiveHeartbeat = (nodeId: string, id: string): Uint8Array => {
    const { type, data } = heartbeatMessage(nodeId, 'Ready');
    const extra: Record<string, unknown> = { ...data };
    for (let i = 0; i < 110_000; i++) extra[`k${i}`] = 0;
    return new Packr({ useRecords: false, variableMapSize: true }).pack({ type, id, data: extra });
  };
  const boundRows: Row[] = [
    { code: 'invalid_message', fatal: false, what: 'a MessagePack Heartbeat of 880 KB with 110,000 extra keys', provoke: async () => {
      const c = await registered();
      const body = abusiveHeartbeat(c.nodeId!, 'hb-big');
      expect(body.length).toBeGreaterThan(800_000);
      c.sendFrame(CODEC_MSGPACK, body);
      return { link: c, replyTo: 'hb-big', field: 'data' };
    } },
    { code: 'invalid_message', fatal: false, what: 'the same Heartbeat cut short, so that it cannot decode: refused before decoding', provoke: async () => {
      const c = await registered();
      const body = abusiveHeartbeat(c.nodeId!, 'hb-cut');
      c.sendFrame(CODEC_MSGPACK, body.subarray(0, body.length - 100));
      return { link: c, replyTo: 'hb-cut', field: 'data' };
    } },
    { code: 'invalid_message', fatal: false, what: 'a LogChunk with 100,000 extra keys (over its item budget)', provoke: async () => {
      const c = await registered();
      const data: Record<string, unknown> = { job_id: randomUUID(), attempt: 1, stream: 'stdout', seq: 0, data: '' };
      for (let i = 0; i < 100_000; i++) data[`k${i}`] = 0;
      c.sendFrame(CODEC_MSGPACK, new Packr({ useRecords: false, variableMapSize: true }).pack({ type: 'LogChunk', id: 'log-big', data }));
      return { link: c, replyTo: 'log-big', field: 'data' };
    } },
    { code: 'invalid_message', fatal: false, what: 'a RegisterNode with a 900 KB tag value (over the 256 KiB a RegisterNode may have)', provoke: async () => {
      const c = await fresh();
      const register = registerNodeMessage({ token: await p.registrationToken(), id: 'reg-tag' });
      register.data.node_info.tags = { region: 'x'.repeat(900_000) };
      c.send(register);
      return { link: c, replyTo: 'reg-tag', field: 'data', kept: async () => {
        await c.register({ token: await p.registrationToken() });
        await links.heartbeatTaken(p.plane, c);
      } };
    } },
    { code: 'invalid_message', fatal: false, what: 'a RegisterNode with a tag value of 257 characters', provoke: async () => {
      const c = await fresh();
      const register = registerNodeMessage({ token: await p.registrationToken(), id: 'reg-tag-2' });
      register.data.node_info.tags = { region: 'x'.repeat(257) };
      c.send(register);
      return { link: c, replyTo: 'reg-tag-2', field: 'data.node_info.tags.region', kept: async () => {
        await c.register({ token: await p.registrationToken() });
        await links.heartbeatTaken(p.plane, c);
      } };
    } },
    { code: 'invalid_message', fatal: false, what: 'a RegisterNode with 100,000 runner types', provoke: async () => {
      const c = await fresh();
      const register = registerNodeMessage({ token: await p.registrationToken(), id: 'reg-types' });
      register.data.capabilities.runner_types = Array.from({ length: 100_000 }, (_, i) => `r${i}`);
      c.sendFrame(CODEC_MSGPACK, new Packr({ useRecords: false, variableMapSize: true }).pack(register));
      return { link: c, replyTo: 'reg-types', field: 'data', kept: async () => {
        await c.register({ token: await p.registrationToken() });
        await links.heartbeatTaken(p.plane, c);
      } };
    } },
    // Item 9: no control character in a name (it would reach `muster nodes` and logs raw).
    ...['\x1b]0;pwned\x07\x1b[2J', 'runner-02\n00000000-0000-4000-8000-000000000000  forged  ready'].map(
      (hostname): Row => ({ code: 'invalid_message', fatal: false, what: `a RegisterNode with hostname ${JSON.stringify(hostname)}`, provoke: async () => {
        const c = await fresh();
        c.send(registerNodeMessage({ token: await p.registrationToken(), id: 'reg-ctl', hostname }));
        return { link: c, replyTo: 'reg-ctl', field: 'data.node_info.hostname', kept: async () => {
          await c.register({ token: await p.registrationToken() });
          await links.heartbeatTaken(p.plane, c);
          expect(p.plane.api.listNodes().map((v) => v.hostname)).not.toContain(hostname);
        } };
      } }),
    ),
  ];
  it.each(boundRows)('$code (fatal $fatal) for a field over its bound: $what', async (row) => expectAnswered(row, p.plane));

  it('still serves the bystander: it gets a job and completes it', async () => links.servesAJob(p.plane, bystander));
});

describe('a plane with payload encryption', () => {
  let p: SecurityPlane;
  let bystander: ProtocolClient;

  beforeAll(async () => {
    const keyFile = path.join(dir, 'payload.key');
    fs.writeFileSync(keyFile, `${ENCRYPTION_KEY.toString('base64')}\n`, { mode: 0o600 });
    p = await startSecurityPlane({ encryptKeyFile: keyFile, failedAuthPerMinute: 0 });
    ({ client: bystander } = await links.encryptedClient(p.tcpUrl, ENCRYPTION_KEY));
    await bystander.register({ token: await p.registrationToken(), hostname: 'bystander.example.test' });
    bystander.startHeartbeats(BYSTANDER_BEAT_MS);
  });

  afterEach(async () => links.unharmed(p.plane, bystander));
  afterAll(async () => {
    await bystander?.close();
    await p?.stop();
  });

  const rows: Row[] = [
    { code: 'decrypt_failed', fatal: true, what: 'a frame with one bit of its tag flipped, from a registered node', provoke: async () => {
      const { client, inner } = await links.encryptedClient(p.tcpUrl, ENCRYPTION_KEY);
      track(client);
      await client.register({ token: await p.registrationToken() });
      const body = new PayloadCipher(ENCRYPTION_KEY).encrypt(0x81, encodeBody(CODEC_JSON, heartbeatMessage(client.nodeId!)));
      body[body.length - 1]! ^= 0x01;
      inner.send(0x81, body);
      return { link: client };
    } },
    { code: 'decrypt_failed', fatal: true, what: 'a plaintext RegisterNode (the answer is encrypted)', provoke: async () => {
      const { client, inner } = await links.encryptedClient(p.tcpUrl, ENCRYPTION_KEY);
      track(client);
      const token = await p.registrationToken();
      inner.send(CODEC_JSON, encodeBody(CODEC_JSON, registerNodeMessage({ token })));
      return { link: client, secret: token };
    } },
  ];

  it.each(rows)('$code (fatal $fatal): $what', async (row) => expectAnswered(row, p.plane));

  it('still serves the bystander: it gets a job and completes it', async () => links.servesAJob(p.plane, bystander));
});

describe('a plane with TLS, an allow-list without loopback, a small message rate; then shut down', () => {
  let g: links.TlsPlane;
  let bystander: NodeClient;
  let stopped = false;

  beforeAll(async () => {
    const limits = { nodeMessageRate: 10, nodeMessageBurst: 20, banAfterViolations: 0 };
    g = await links.startTlsPlane(SECRET, { nodeAllowCidrs: '10.0.0.0/8', ...limits });
    // The Unix socket has no address: the allow-list lets it in.
    bystander = await NodeClient.connect(g.unixUrl);
    await bystander.register({ token: await g.plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
    bystander.startHeartbeats(BYSTANDER_BEAT_MS);
  });

  afterEach(async () => {
    if (!stopped) await links.unharmed(g.plane, bystander);
  });
  afterAll(async () => {
    bystander?.destroy();
    await g?.stop();
  });

  /** Sends a frame the plane answers (an unknown type) until it is answered rather than dropped. */
  async function servedAgain(c: NodeClient): Promise<void> {
    for (let i = 0; ; i++) {
      c.send({ type: 'Probe', id: `p-${i}`, data: {} });
      for (;;) {
        const answer = await c.next('Error', 300).catch(() => undefined);
        if (answer === undefined) break;
        if (answer.message.reply_to === `p-${i}`) {
          expect(answer.message.data.code).toBe('unknown_type');
          return;
        }
      }
    }
  }

  const rows: Row[] = [
    { code: 'forbidden', fatal: true, what: 'a TLS connection from 127.0.0.1, outside nodeAllowCidrs', provoke: async () => ({
      link: track(await links.tlsClient(g.tlsUrl, { ca: g.ca })),
    }) },
    { code: 'rate_limited', fatal: false, what: '200 Heartbeats at once, over a rate of 10/s (burst 20)', provoke: async () => {
      const c = track(await NodeClient.connect(g.unixUrl));
      await c.register({ token: await g.plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
      const frame = encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, heartbeatMessage(c.nodeId!)));
      c.sendRaw(Buffer.concat(Array.from({ length: 200 }, () => frame)));
      return { link: c, kept: () => servedAgain(c) };
    } },
  ];

  it.each(rows)('$code (fatal $fatal): $what', async (row) => expectAnswered(row, g.plane));

  it('still serves the bystander: it gets a job and completes it', async () => links.servesAJob(g.plane, bystander));

  // The stop closes every listener in the turn it begins: a later TCP connection is refused by the
  // kernel (protocol-errors.test.ts), a WebSocket upgrade gets HTTP 503, gRPC a GOAWAY. So
  // shutting_down reaches only a connection accepted before the stop and handed to the plane
  // after it: a TLS one whose handshake ends then. A node already connected is told Shutdown
  // (reason, grace period), not an Error, and closed.
  it('shutting_down (fatal true) to a TLS handshake finished after the stop began; Shutdown to the bystander', async () => {
    covered.add('shutting_down');
    const late = await links.heldTlsHandshake(g.tlsUrl, g.ca);
    stopped = true;
    const stopping = g.plane.shutdown('catalogue over');
    const shutdown = await bystander.next('Shutdown');
    expect(shutdown.message.data).toEqual({ reason: 'catalogue over', grace_period_ms: DEFAULTS.shutdownGraceMs });
    await bystander.closedWithin();
    expect(bystander.unread()).toEqual([]);
    const c = await late.finish();
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'shutting_down', fatal: true });
    // The plane ends the connection (our side, TLS over a held stream, does not close by itself).
    await until('the plane ends the late connection', () => c.isClosed);
    expect(c.unread()).toEqual([]);
    await stopping;
  });
});
