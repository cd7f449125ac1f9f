// A session ends with `Deregister` (issue 8, item 5), against a real in-process control plane
// over real TCP: every session token of that session is refused from then on with
// `token_revoked`, also after a restart of the plane on the same data directory, while the
// registration token still registers the host afresh as a new node.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { DEFAULTS, loadConfig, type Config } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import type { TokenRecord } from '../../../supervisor/store/token-store.js';
import { NodeClient, registerNodeMessage } from '../node-client.js';
import { TCP_ONLY } from '../tcp-only.js';

const SECRET = 'deregistration-test-secret-0123456789abcdef';
const logger = createLogger({ level: 'silent' });

let dataDir: string;
let plane: ControlPlane | undefined;
const opened: NodeClient[] = [];

/** Limits of the security work that would get in the way of several refusals from one address. */
function withoutAbuseLimits(): Record<string, number> {
  const off = { failedAuthPerMinute: 0, banAfterViolations: 0, apiRequestRate: 0 };
  return Object.fromEntries(Object.entries(off).filter(([key]) => Object.hasOwn(DEFAULTS, key)));
}

function planeConfig(dir: string): Config {
  return loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      ...TCP_ONLY,
      http: '127.0.0.1:0',
      jwtSecret: SECRET,
      ...withoutAbuseLimits(),
    },
  });
}

async function start(): Promise<ControlPlane> {
  plane = await startControlPlane(planeConfig(dataDir), logger);
  return plane;
}

function tcpUrl(p: ControlPlane): string {
  return p.nodeUrls.find((u) => u.startsWith('tcp:')) as string;
}

async function client(p: ControlPlane): Promise<NodeClient> {
  const c = await NodeClient.connect(tcpUrl(p));
  opened.push(c);
  return c;
}

/** A resume with `sessionToken` is refused: fatal `token_revoked`, answering the RegisterNode, then the close. */
async function expectResumeRefused(p: ControlPlane, nodeId: string, sessionToken: string): Promise<void> {
  const c = await client(p);
  c.send(registerNodeMessage({ token: sessionToken, resume: { node_id: nodeId, running_jobs: [], unacked_results: [] }, id: 'resume-1' }));
  const { message } = await c.next('Error');
  expect(message.data).toMatchObject({ code: 'token_revoked', fatal: true });
  expect(message.reply_to).toBe('resume-1');
  await c.closedWithin();
  expect(c.unread()).toEqual([]);
}

/** The registration token still registers: a new node, not a resume of the old one. */
async function expectFreshRegistration(p: ControlPlane, registrationToken: string, oldNodeId: string): Promise<void> {
  const c = await client(p);
  const ack = await c.register({ token: registrationToken });
  expect(ack.data.resumed).toBe(false);
  expect(ack.data.node_id).not.toBe(oldNodeId);
  expect(p.api.listNodes().find((n) => n.node_id === ack.data.node_id)?.state).toBe('ready');
}

beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-deregister-'));
});

afterEach(async () => {
  for (const c of opened.splice(0)) c.destroy();
  await plane?.shutdown();
  plane = undefined;
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('a deregistered node', () => {
  it('cannot be resumed with any session token of its session, also after a plane restart; its registration token registers afresh', async () => {
    let p = await start();
    const registrationToken = await p.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const first = await client(p);
    await first.register({ token: registrationToken });
    const nodeId = first.nodeId as string;
    const firstSession = first.sessionToken as string;
    // A dropped connection resumed: the session now stands on a second session token too.
    first.destroy();
    const resumed = await client(p);
    const ack = await resumed.register({ token: firstSession, resume: { node_id: nodeId, running_jobs: [], unacked_results: [] } });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    const secondSession = resumed.sessionToken as string;

    resumed.send({ type: 'Deregister', id: 'bye', data: { node_id: nodeId, reason: 'drained' } });
    await resumed.closedWithin();
    expect(p.api.listNodes().find((n) => n.node_id === nodeId)?.state).toBe('dead');

    await expectResumeRefused(p, nodeId, secondSession);
    await expectResumeRefused(p, nodeId, firstSession);
    await expectFreshRegistration(p, registrationToken, nodeId);

    // `muster token list` shows why; the registration token is not revoked.
    const admin = await p.tokens.mintApiToken({ role: 'admin', ttlSeconds: 600, sub: 'deregistration-test' });
    const res = await fetch(`${p.httpUrl}/v1/tokens`, { headers: { authorization: `Bearer ${admin}` } });
    const tokens = (await res.json()) as TokenRecord[];
    const sessionJtis = [firstSession, secondSession].map((t) => decodeJwt(t).jti);
    expect(tokens.filter((t) => sessionJtis.includes(t.jti)).map((t) => t.revoke_reason)).toEqual(['deregistered', 'deregistered']);
    expect(tokens.find((t) => t.jti === decodeJwt(registrationToken).jti)?.revoked_at).toBeUndefined();

    // The revocations are stored: a restarted plane on the same data directory still refuses them.
    await p.shutdown();
    p = await start();
    await expectResumeRefused(p, nodeId, secondSession);
    await expectResumeRefused(p, nodeId, firstSession);
    await expectFreshRegistration(p, registrationToken, nodeId);
  });

  it('keeps the session of a node that only lost its connection: it resumes', async () => {
    const p = await start();
    const registrationToken = await p.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const first = await client(p);
    await first.register({ token: registrationToken });
    first.destroy();
    const again = await client(p);
    const ack = await again.register({ token: first.sessionToken as string, resume: { node_id: first.nodeId as string, running_jobs: [], unacked_results: [] } });
    expect(ack.data).toMatchObject({ node_id: first.nodeId, resumed: true });
  });
});
