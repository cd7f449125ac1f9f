// Access control over real sockets and a real in-process plane: the CIDR allow-lists of the node
// listeners and of the admin API, and the admin API's roles on every route. Every test connects
// from 127.0.0.1, so "another network" is a list that names only 10.0.0.0/8.
import fs from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { registerAdminAccess } from '../../../supervisor/admin/api-access.js';
import { requireRole } from '../../../supervisor/admin/api-auth.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { refusedAtOnce, SECRET, startSecurityPlane, type SecurityPlane } from '../security-plane.js';

let running: SecurityPlane | undefined;

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function start(overrides: Record<string, string | number | boolean>, withAudit = false): Promise<SecurityPlane> {
  running = await startSecurityPlane(overrides, { withAudit });
  return running;
}

describe('node allow-list (nodeAllowCidrs)', () => {
  it('refuses a node from outside the list with forbidden and closes, before it sends anything', async () => {
    const p = await start({ nodeAllowCidrs: '10.0.0.0/8' });
    const c = await p.client();
    const error = await refusedAtOnce(c);
    expect(error).toMatchObject({ code: 'forbidden', fatal: true });
    expect(p.plane.api.listNodes()).toEqual([]);
  });

  it('lets in a node from a listed network: it registers and is shown', async () => {
    const p = await start({ nodeAllowCidrs: '10.0.0.0/8, 127.0.0.0/8' });
    const c = await p.client();
    const ack = await c.register({ token: await p.registrationToken() });
    expect(p.plane.api.listNodes().map((n) => n.node_id)).toEqual([ack.data.node_id]);
  });

  it('always lets in the Unix socket, which has no address', async () => {
    const unixDir = fs.mkdtempSync(path.join('/tmp', 'muster-acl-'));
    try {
      const p = await start({ nodeAllowCidrs: '10.0.0.0/8', unix: path.join(unixDir, 'node.sock') });
      const unixUrl = p.plane.nodeUrls.find((u) => u.startsWith('unix://'));
      expect(unixUrl).toBeDefined();
      const c = await p.client(unixUrl);
      await c.register({ token: await p.registrationToken() });
      // ...while TCP from loopback is still refused.
      expect(await refusedAtOnce(await p.client())).toMatchObject({ code: 'forbidden' });
    } finally {
      fs.rmSync(unixDir, { recursive: true, force: true });
    }
  });

  it('fails to start on a malformed network, naming the setting', async () => {
    await expect(start({ nodeAllowCidrs: '10.0.0.0/40' })).rejects.toThrow(/nodeAllowCidrs/);
  });

  it('audits refusals once per address and minute, not once per try', async () => {
    const p = await start({ nodeAllowCidrs: '10.0.0.0/8' }, true);
    for (let i = 0; i < 5; i++) await refusedAtOnce(await p.client());
    const denied = p.auditLines().filter((l) => l.event === 'access_denied');
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ address: '127.0.0.1', code: 'forbidden' });
    expect(p.auditLines().filter((l) => l.event === 'connection_opened')).toEqual([]);
  });
});

describe('admin API allow-list (apiAllowCidrs)', () => {
  it('answers 403 forbidden to an address outside the list, on every path, the probes too', async () => {
    const p = await start({ apiAllowCidrs: '10.0.0.0/8' });
    const admin = await p.apiToken('admin');
    for (const [method, urlPath, token] of [
      ['GET', '/v1/nodes', admin],
      ['GET', '/v1/stats', admin],
      ['POST', '/v1/jobs', admin],
      ['GET', '/healthz', undefined],
      ['GET', '/readyz', undefined],
      ['GET', '/metrics', undefined],
    ] as const) {
      const answer = await p.http(method, urlPath, token, method === 'POST' ? { job: { command: ['true'] } } : undefined);
      expect(answer.status, `${method} ${urlPath}`).toBe(403);
      expect(answer.json).toMatchObject({ error: { code: 'forbidden' } });
    }
    const stats = await p.plane.api.stats();
    expect(stats.jobs_Queued ?? 0).toBe(0);
  });

  it('answers a listed address as usual, and keeps the node listeners open to all when only the API is listed', async () => {
    const p = await start({ apiAllowCidrs: '127.0.0.1' });
    expect((await p.http('GET', '/healthz')).status).toBe(200);
    expect((await p.http('GET', '/v1/nodes', await p.apiToken('viewer'))).status).toBe(200);
    const c = await p.client();
    await c.register({ token: await p.registrationToken() });
  });
});

describe('admin API roles', () => {
  it('enforces viewer < operator < admin on the routes, and a token on every /v1 route', async () => {
    const p = await start({});
    const viewer = await p.apiToken('viewer');
    const operator = await p.apiToken('operator');
    const job = { job: { command: ['true'] } };
    expect((await p.http('GET', '/v1/nodes')).status).toBe(401);
    expect((await p.http('GET', '/v1/nodes', viewer)).status).toBe(200);
    const refused = await p.http('POST', '/v1/jobs', viewer, job);
    expect(refused.status).toBe(403);
    expect(refused.json).toMatchObject({ error: { code: 'forbidden' } });
    expect((await p.http('POST', '/v1/jobs', operator, job)).status).toBe(201);
    expect((await p.http('POST', '/v1/nodes/no-such-node/drain', viewer)).status).toBe(403);
  });

  it('refuses to start with a /v1 route that has no role check', async () => {
    const app = Fastify({ logger: false });
    registerAdminAccess(app, {});
    const tokens = new TokenAuthority(new TextEncoder().encode(SECRET));
    app.get('/v1/guarded', { onRequest: requireRole(tokens, 'viewer') }, async () => ({ ok: true }));
    app.get('/healthz', async () => ({ ok: true }));
    let failure: unknown;
    try {
      app.get('/v1/open', async () => ({ secret: true }));
      await app.ready();
    } catch (err) {
      failure = err;
    } finally {
      await app.close().catch(() => undefined);
    }
    expect(String(failure)).toMatch(/\/v1\/open has no role check/);
  });
});
