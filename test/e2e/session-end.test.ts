// End to end, a node's session that ends, against a real `muster serve`: a real agent whose
// resume is refused registers afresh as a new node, and the result it saved under its old
// identity, refused by the plane, is dropped rather than resent forever (the plane requeues that
// attempt once the old node expires).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TokenRecord } from '../../supervisor/admin/wire-types.js';
import { Harness, uniqueTag, waitFor } from './harness.js';

const h = new Harness();

afterAll(async () => {
  await h.close();
}, 60_000);

describe('a refused resume', () => {
  it('ends with the agent as a new node, its old result dropped once, its outbox empty, and the job run again', async () => {
    const plane = await h.startPlane();
    const proxy = await h.proxy(plane.tcpUrl);
    const group = uniqueTag('refused');
    const agent = await h.startAgent(plane, { url: proxy.url, tags: { group } });
    const gate = h.gate();
    const id = await plane.api.submit({
      job: { command: ['sh', '-c', 'while [ ! -e "$GATE" ]; do sleep 0.05; done; echo done'], environment: { GATE: gate.path } },
      selector: { tags: { group } },
    });
    await agent.waitForStart(id, 1);

    // Cut off, the job ends: its result waits in the outbox under the old node id.
    proxy.block();
    proxy.cut();
    gate.open();
    const outbox = join(agent.workDir, '.outbox');
    await waitFor(() => existsSync(join(outbox, `${id}-1.json`)), 15_000, 'result kept in the outbox');
    // Its session tokens are revoked meanwhile: the resume will be refused.
    const tokens = await plane.api.request<TokenRecord[]>('GET', '/v1/tokens');
    const sessions = tokens.body.filter((t) => t.role === 'session' && t.sub === agent.nodeId);
    expect(sessions.length).toBeGreaterThan(0);
    for (const t of sessions) expect((await plane.api.request('POST', `/v1/tokens/${t.jti}/revoke`, { reason: 'test' })).status).toBe(200);
    proxy.unblock();

    const fresh = await agent.proc.waitForLog((l) => l.msg === 'registered' && l.node_id !== agent.nodeId, 20_000, 'fresh registration');
    expect(fresh.resumed).toBe(false);
    const dropped = await agent.proc.waitForLog((l) => String(l.msg).includes('dropped') && l.job_id === id, 15_000, 'result dropped');
    expect(dropped).toMatchObject({ attempt: 1, node_id: fresh.node_id });
    expect(readdirSync(outbox)).toEqual([]);

    // The old node expires, the plane requeues attempt 1, and the new node runs attempt 2.
    const job = await plane.api.waitForJob(id, 30_000);
    expect(job).toMatchObject({ state: 'Completed', attempt: 2, node_id: fresh.node_id, result: { stdout: 'done\n' } });
    await waitFor(() => readdirSync(outbox).length === 0, 10_000, 'outbox emptied by the ack');
    const lines = agent.proc.jsonLines();
    expect(lines.filter((l) => String(l.msg).includes('dropped'))).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'resending results not acked in time')).toEqual([]);
  }, 90_000);
});
