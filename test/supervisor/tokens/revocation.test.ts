// Revocation and session refresh against a real in-process control plane: raw TCP nodes
// (node-client.ts), the admin API over real HTTP, and `bin/muster` as a real child process.
// A revoked token (registration, session or API) ends what stands on it at once, and is refused
// afterwards; a healthy node meanwhile notices nothing and is still served jobs.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import type { MessageData } from '../../../protocol/messages.js';
import { DEFAULTS, loadConfig, type Config } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import type { TokenRecord } from '../../../supervisor/store/token-store.js';
import { storePath } from '../../../supervisor/store/sqlite-database.js';
import { SqliteTokenStore } from '../../../supervisor/store/sqlite-token-store.js';
import { NodeClient, registerNodeMessage, type Received } from '../node-client.js';
import { TCP_ONLY } from '../tcp-only.js';
import { MUSTER_BIN } from '../../muster-process.js';

const SECRET = 'revocation-test-secret-0123456789abcdefghij';
const HEARTBEAT_INTERVAL_MS = 1_000;
const REVOCATION_POLL_MS = 200;
/** The sample RegisterNode's host and node type (node-client.ts). */
const HOST = 'runner-01.example.test';

const logger = createLogger({ level: 'silent' });

let dataDir: string;
let plane: ControlPlane;
let url: string;
let adminToken: string;
/** A healthy node connected through every test; it must notice nothing. */
let bystander: NodeClient;
const opened: NodeClient[] = [];
const extraDirs: string[] = [];

/**
 * Settings of the other security work that would get in the way of many refusals from one
 * address in a short time (failed-authentication budget, bans), turned off where they exist.
 */
function withoutAbuseLimits(): Record<string, number> {
  const off = { failedAuthPerMinute: 0, banAfterViolations: 0, apiRequestRate: 0 };
  return Object.fromEntries(Object.entries(off).filter(([key]) => Object.hasOwn(DEFAULTS, key)));
}

function planeConfig(dir: string, overrides: Record<string, string | number> = {}): Config {
  return loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      ...TCP_ONLY,
      http: '127.0.0.1:0',
      jwtSecret: SECRET,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      revocationPollMs: REVOCATION_POLL_MS,
      ...withoutAbuseLimits(),
      ...overrides,
    },
  });
}

async function client(target = url): Promise<NodeClient> {
  const c = await NodeClient.connect(target);
  opened.push(c);
  return c;
}

interface Answer<T> {
  status: number;
  body: T;
}

async function call<T>(method: string, route: string, token: string, body?: unknown, base = plane.httpUrl): Promise<Answer<T>> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
}

interface Minted {
  token: string;
  jti: string;
  expires_at: string;
}

async function mint(body: Record<string, unknown>, base = plane.httpUrl): Promise<Minted> {
  const answer = await call<Minted>('POST', '/v1/tokens', adminToken, body, base);
  expect(answer.status).toBe(201);
  return answer.body;
}

async function revoke(jti: string, base = plane.httpUrl): Promise<void> {
  const answer = await call<{ jti: string }>('POST', `/v1/tokens/${encodeURIComponent(jti)}/revoke`, adminToken, { reason: 'test' }, base);
  expect(answer).toMatchObject({ status: 200, body: { jti } });
}

/** A node registered with a fresh registration token minted (and recorded) over the API. */
async function registeredNode(): Promise<{ node: NodeClient; registration: Minted }> {
  const registration = await mint({ role: 'node', ttl_seconds: 600 });
  const node = await client();
  await node.register({ token: registration.token });
  return { node, registration };
}

function resumeOf(nodeId: string): NonNullable<MessageData<'RegisterNode'>['resume']> {
  return { node_id: nodeId, running_jobs: [], unacked_results: [] };
}

/** A fatal `Error` with `code`, then the plane closes the connection, and nothing more arrives. */
async function expectFatal(c: NodeClient, code: string): Promise<Received<'Error'>> {
  const error = await c.next('Error');
  expect(error.message.data).toMatchObject({ code, fatal: true });
  await c.closedWithin();
  expect(c.unread()).toEqual([]);
  return error;
}

async function until(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The bystander is still connected, its heartbeats are taken, it is `ready`, and nothing was sent to it. */
async function bystanderUnharmed(): Promise<void> {
  expect(bystander.isClosed).toBe(false);
  const sent = Date.now();
  await until('the clock moves on', () => Date.now() > sent);
  bystander.heartbeat();
  await until('the plane takes the bystander’s heartbeat', () => {
    const view = plane.api.listNodes().find((n) => n.node_id === bystander.nodeId);
    return view !== undefined && Date.parse(view.last_heartbeat) >= sent;
  });
  expect(plane.api.listNodes().find((n) => n.node_id === bystander.nodeId)?.state).toBe('ready');
  expect(bystander.unread()).toEqual([]);
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `bin/muster` as a user runs it, asynchronously: the plane lives in this process. */
function muster(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  return new Promise((resolve) => {
    execFile(MUSTER_BIN, args, { cwd: os.tmpdir(), env: { ...clean, ...env }, timeout: 25_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-revocation-'));
  plane = await startControlPlane(planeConfig(dataDir), logger);
  url = plane.nodeUrls.find((u) => u.startsWith('tcp:')) as string;
  adminToken = await plane.tokens.mintApiToken({ role: 'admin', ttlSeconds: 600, sub: 'revocation-test' });
  bystander = await NodeClient.connect(url);
  await bystander.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
  bystander.startHeartbeats(HEARTBEAT_INTERVAL_MS / 2);
});

afterEach(() => {
  for (const c of opened.splice(0)) c.destroy();
});

afterAll(async () => {
  bystander?.destroy();
  await plane?.shutdown();
  for (const dir of [dataDir, ...extraDirs]) if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

describe('revoking a registration token', () => {
  it('disconnects the node standing on it at once, with token_revoked', async () => {
    const { node, registration } = await registeredNode();
    await revoke(registration.jti);
    await expectFatal(node, 'token_revoked');
    await bystanderUnharmed();
  });

  it('refuses a later RegisterNode with it, and a resume of any session it gave', async () => {
    const { node, registration } = await registeredNode();
    const nodeId = node.nodeId as string;
    const session = node.sessionToken as string;
    expect(decodeJwt(session).reg_jti).toBe(registration.jti);
    await revoke(registration.jti);
    await expectFatal(node, 'token_revoked');

    const again = await client();
    again.send(registerNodeMessage({ token: registration.token }));
    await expectFatal(again, 'token_revoked');

    const resuming = await client();
    resuming.send(registerNodeMessage({ token: session, resume: resumeOf(nodeId) }));
    await expectFatal(resuming, 'token_revoked');
    await bystanderUnharmed();
  });
});

describe('revoking a session token', () => {
  it('disconnects the node and refuses the resume, while its registration token still registers afresh', async () => {
    const { node, registration } = await registeredNode();
    const nodeId = node.nodeId as string;
    const sessionJti = decodeJwt(node.sessionToken as string).jti as string;
    await revoke(sessionJti);
    await expectFatal(node, 'token_revoked');

    const resuming = await client();
    resuming.send(registerNodeMessage({ token: node.sessionToken as string, resume: resumeOf(nodeId) }));
    await expectFatal(resuming, 'token_revoked');

    // What an agent does next: register as a new node with its registration token.
    const fresh = await client();
    const ack = await fresh.register({ token: registration.token });
    expect(ack.data.resumed).toBe(false);
    expect(ack.data.node_id).not.toBe(nodeId);
    await bystanderUnharmed();
  });

  it('also ends a node that resumed with a session token once that token is revoked', async () => {
    const { node } = await registeredNode();
    const nodeId = node.nodeId as string;
    const firstSession = node.sessionToken as string;
    node.destroy();
    const resumed = await client();
    const ack = await resumed.register({ token: firstSession, resume: resumeOf(nodeId) });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    await revoke(decodeJwt(firstSession).jti as string);
    await expectFatal(resumed, 'token_revoked');
  });

  it('keeps a healthy node served: it still gets and finishes a job', async () => {
    await bystanderUnharmed();
    const submitted = await call<{ job_id: string }>('POST', '/v1/jobs', adminToken, { job: { command: ['true'] } });
    expect(submitted.status).toBe(201);
    const assignment = await bystander.next('JobAssignment');
    const { job_id, attempt } = assignment.message.data;
    expect(job_id).toBe(submitted.body.job_id);
    bystander.send({ type: 'JobAccepted', data: { job_id, attempt } });
    const now = new Date().toISOString();
    bystander.send({
      type: 'JobResult',
      data: {
        job_id,
        attempt,
        node_id: bystander.nodeId,
        result: { status: 'Completed', exit_code: 0, stdout: '', stderr: '', artifacts: [], started_at: now, completed_at: now },
        metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
      },
    });
    await bystander.next('JobResultAck');
    expect((await call<{ state: string }>('GET', `/v1/jobs/${job_id}`, adminToken)).body.state).toBe('Completed');
  });
});

describe('admin API tokens', () => {
  it('refuses a revoked API token with 401, and keeps the others working', async () => {
    const operator = await mint({ role: 'operator', ttl_seconds: 600, sub: 'ci' });
    expect((await call('GET', '/v1/nodes', operator.token)).status).toBe(200);
    await revoke(operator.jti);
    const refused = await call<{ error: { code: string } }>('GET', '/v1/nodes', operator.token);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('unauthorized');
    expect(JSON.stringify(refused.body)).not.toContain(operator.token);
    expect((await call('GET', '/v1/nodes', adminToken)).status).toBe(200);
  });

  it('lists minted tokens by jti, role, subject and expiry, never the token itself', async () => {
    const node = await mint({ role: 'node', ttl_seconds: 900, sub: HOST, node_type: 'linux-x64' });
    const viewer = await mint({ role: 'viewer', sub: 'dashboards' });
    await revoke(viewer.jti);
    const { status, body } = await call<TokenRecord[]>('GET', '/v1/tokens', adminToken);
    expect(status).toBe(200);
    expect(body.find((t) => t.jti === node.jti)).toEqual({
      jti: node.jti,
      role: 'node',
      sub: HOST,
      node_type: 'linux-x64',
      issued_at: expect.any(String),
      expires_at: node.expires_at,
    });
    expect(body.find((t) => t.jti === viewer.jti)).toMatchObject({ role: 'viewer', sub: 'dashboards', revoke_reason: 'test' });
    expect(Date.parse(viewer.expires_at) - Date.now()).toBeGreaterThan(3000 * 1000);
    // Session tokens the plane gave nodes are listed too, by node id.
    expect(body.some((t) => t.role === 'session' && t.sub === bystander.nodeId)).toBe(true);
    const text = JSON.stringify(body);
    expect(text).not.toContain(node.token);
    expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });

  it('lets only admins mint, list and revoke, and checks what it is asked', async () => {
    const operator = await mint({ role: 'operator' });
    expect((await call('GET', '/v1/tokens', operator.token)).status).toBe(403);
    expect((await call('POST', '/v1/tokens', operator.token, { role: 'admin' })).status).toBe(403);
    expect((await call('POST', `/v1/tokens/${operator.jti}/revoke`, operator.token)).status).toBe(403);
    for (const [body, field] of [
      [{ role: 'root' }, 'role'],
      [{ role: 'admin', node_type: 'linux' }, 'node_type'],
      [{ role: 'node', ttl_seconds: 0 }, 'ttl_seconds'],
      [{ role: 'node', ttl_seconds: 1.5 }, 'ttl_seconds'],
      [{ role: 'node', ttl_seconds: 400_000_000 }, 'ttl_seconds'],
      [{}, 'role'],
    ] as const) {
      const answer = await call<{ error: { code: string; field?: string } }>('POST', '/v1/tokens', adminToken, body);
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatchObject({ code: 'invalid_request', field });
    }
    const badJti = await call('POST', `/v1/tokens/${encodeURIComponent('has space')}/revoke`, adminToken);
    expect(badJti.status).toBe(400);
  });
});

describe('muster token (the CLI, a real process)', () => {
  it('lists and revokes through a running plane: the node on the revoked token is disconnected', async () => {
    const env = { MUSTER_API: plane.httpUrl, MUSTER_TOKEN: adminToken };
    const created = await muster(['token', 'create', '--role', 'node', '--sub', HOST, '--ttl', '10m'], env);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const jti = decodeJwt(token).jti as string;
    const node = await client();
    await node.register({ token });
    // Four CLI processes run before the revocation: on a loaded machine they outlast the node's
    // liveness window (1 s interval), so the node keeps beating, as a real one does.
    node.startHeartbeats(HEARTBEAT_INTERVAL_MS / 4);

    const list = await muster(['token', 'list'], env);
    expect(list.code).toBe(0);
    const line = list.stdout.split('\n').find((l) => l.startsWith(jti));
    expect(line).toMatch(new RegExp(`^${jti}\\s+node\\s+${HOST.replaceAll('.', '\\.')}\\s+\\S+Z\\s+active$`));
    expect(list.stdout).toMatch(/^JTI\s+ROLE\s+SUBJECT\s+EXPIRES\s+STATUS/);
    expect(list.stdout).not.toContain(token);
    const json = await muster(['token', 'list', '--json'], env);
    expect((JSON.parse(json.stdout) as TokenRecord[]).find((t) => t.jti === jti)).toMatchObject({ role: 'node', sub: HOST });

    const revoked = await muster(['token', 'revoke', jti, '--reason', 'host retired'], env);
    expect(revoked).toMatchObject({ code: 0, stderr: '' });
    expect(revoked.stdout).toContain(`revoked ${jti}`);
    await expectFatal(node, 'token_revoked');
    const after = await muster(['token', 'list'], env);
    expect(after.stdout.split('\n').find((l) => l.startsWith(jti))).toMatch(/\srevoked$/);
    await bystanderUnharmed();
  });

  it('works offline on a data directory, and a plane on it picks the revocation up', async () => {
    // First set-up: no plane; the token is minted with the directory's secret and recorded in its store.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-offline-'));
    extraDirs.push(dir);
    const created = await muster(['token', 'create', '--role', 'node', '--data-dir', dir]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const jti = decodeJwt(token).jti as string;
    const listed = await muster(['token', 'list', '--data-dir', dir, '--json']);
    expect(JSON.parse(listed.stdout)).toMatchObject([{ jti, role: 'node' }]);

    const offlinePlane = await startControlPlane(planeConfig(dir, { jwtSecret: '' }), logger);
    try {
      const node = await client(offlinePlane.nodeUrls[0]);
      await node.register({ token });
      // Revoked by another process writing the same store: the plane reads it within its poll interval.
      const revoked = await muster(['token', 'revoke', jti, '--data-dir', dir]);
      expect(revoked.code).toBe(0);
      await expectFatal(node, 'token_revoked');
      const again = await client(offlinePlane.nodeUrls[0]);
      again.send(registerNodeMessage({ token }));
      await expectFatal(again, 'token_revoked');
    } finally {
      await offlinePlane.shutdown();
    }
  });

  it('says where to look when there is no store and no --api', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-empty-'));
    extraDirs.push(dir);
    const run = await muster(['token', 'list', '--data-dir', dir]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^muster: no control-plane store at .*muster\.db: pass --data-dir, or --api/);
    expect(fs.existsSync(storePath(dir))).toBe(false);
  });
});

describe('session refresh', () => {
  it('sends TokenRefresh at two thirds of the session life; the refreshed token resumes and is revocable', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-refresh-'));
    extraDirs.push(dir);
    const ttl = 3;
    const shortPlane = await startControlPlane(planeConfig(dir, { sessionTtlSeconds: ttl }), logger);
    try {
      const node = await client(shortPlane.nodeUrls[0]);
      node.startHeartbeats(HEARTBEAT_INTERVAL_MS / 2);
      const ack = await node.register({ token: await shortPlane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
      const acked = Date.now();
      const refresh = await node.next('TokenRefresh', 10_000);
      // Timers never fire early: not before two thirds of the (whole-second) life, less a second of rounding.
      expect(Date.now() - acked).toBeGreaterThanOrEqual(((ttl - 1) * 2000) / 3 - 50);
      const refreshed = refresh.message.data;
      expect(Date.parse(refreshed.session_expires_at)).toBeGreaterThan(Date.parse(ack.data.session_expires_at));
      const claims = decodeJwt(refreshed.session_token);
      expect(claims).toMatchObject({ scope: 'node:session', sub: ack.data.node_id });
      expect(claims.reg_jti).toBe(decodeJwt(ack.data.session_token).reg_jti);
      expect(claims.jti).not.toBe(decodeJwt(ack.data.session_token).jti);

      // The node drops, and comes back with the refreshed token.
      node.destroy();
      const back = await client(shortPlane.nodeUrls[0]);
      const resumed = await back.register({ token: refreshed.session_token, resume: resumeOf(ack.data.node_id) });
      expect(resumed.data).toMatchObject({ node_id: ack.data.node_id, resumed: true });

      // Every token the session was given can end it.
      await revoke(claims.jti as string, shortPlane.httpUrl);
      await expectFatal(back, 'token_revoked');
      const listed = await shortPlane.tokens.mintApiToken({ role: 'admin', ttlSeconds: 60 });
      const tokens = await call<TokenRecord[]>('GET', '/v1/tokens', listed, undefined, shortPlane.httpUrl);
      expect(tokens.body.filter((t) => t.role === 'session' && t.sub === ack.data.node_id).length).toBeGreaterThanOrEqual(2);
    } finally {
      await shortPlane.shutdown();
    }
  });

  it('refuses an expired session token; the node must register again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-expired-'));
    extraDirs.push(dir);
    const shortPlane = await startControlPlane(planeConfig(dir, { sessionTtlSeconds: 1, jwtClockToleranceSeconds: 0 }), logger);
    try {
      const registration = await shortPlane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
      const node = await client(shortPlane.nodeUrls[0]);
      const ack = await node.register({ token: registration });
      node.destroy();
      await until('the session token has expired', () => Date.now() > Date.parse(ack.data.session_expires_at) + 1_000, 5_000);
      const late = await client(shortPlane.nodeUrls[0]);
      late.send(registerNodeMessage({ token: ack.data.session_token, resume: resumeOf(ack.data.node_id) }));
      await expectFatal(late, 'token_expired');
      const fresh = await client(shortPlane.nodeUrls[0]);
      expect((await fresh.register({ token: registration })).data.resumed).toBe(false);
    } finally {
      await shortPlane.shutdown();
    }
  });
});

describe('the store behind it', () => {
  it('keeps revocations across a restart of the plane', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-restart-'));
    extraDirs.push(dir);
    let p = await startControlPlane(planeConfig(dir), logger);
    const token = await p.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const jti = decodeJwt(token).jti as string;
    const store = SqliteTokenStore.open(storePath(dir));
    await store.revokeToken(jti, 'written by another process');
    await store.close();
    await p.shutdown();
    p = await startControlPlane(planeConfig(dir, { revocationPollMs: 0 }), logger);
    try {
      const node = await client(p.nodeUrls[0]);
      node.send(registerNodeMessage({ token }));
      await expectFatal(node, 'token_revoked');
    } finally {
      await p.shutdown();
    }
  });
});
