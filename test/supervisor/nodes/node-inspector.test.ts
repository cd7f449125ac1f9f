// `muster serve --inspect ws://...`: a real plane feeds its node actors to a Stately inspector,
// here a WebSocket server this test runs (as Stately's tools would): a real agent registers and
// runs a job, and the server hears that node's actor registered (with the machine's definition),
// the events it was sent and its snapshots through ready, busy and back; nothing of the node's
// token or the job's secret is in what it heard. A plane without the flag is fed to no one
// (the rest of the suite: no actor there is given an `inspect` observer).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_CPUS, Harness, waitFor, type AgentProcess, type PlaneProcess } from '../../e2e/harness.js';
import { safeContext, safeEvent } from '../../../supervisor/nodes/node-inspector.js';
import { planeTokens } from '../../bench/bench-node.js';

interface Heard {
  type: string;
  sessionId: string;
  name?: string;
  definition?: string;
  event?: { type: string; [key: string]: unknown };
  snapshot?: { status?: string; value?: unknown; context?: { nodeId?: string } };
}

const SECRET = 'hunter2-not-for-the-inspector';
const h = new Harness();
let server: WebSocketServer;
const heard: Heard[] = [];
const raw: string[] = [];
let plane: PlaneProcess;
let agent: AgentProcess;
let jobId: string;

beforeAll(async () => {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  server.on('connection', (ws) =>
    ws.on('message', (data) => {
      raw.push(String(data));
      heard.push(JSON.parse(String(data)) as Heard);
    }),
  );
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The plane's secret written first, so that its tokens are minted here (no `muster token create` processes).
  const dataDir = h.tempDir('muster-inspect-');
  writeFileSync(join(dataDir, 'secret'), `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600 });
  const tokens = planeTokens(dataDir);
  const adminToken = await tokens.mintApiToken({ role: 'admin', ttlSeconds: 600 });
  plane = await h.startPlane({ dataDir, adminToken, args: ['--inspect', url] });
  agent = await h.startAgent(plane, { token: await tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
  // A job that takes every core the agent reports: its node turns busy.
  const answer = await plane.api.request<{ job_id: string }>('POST', '/v1/jobs', {
    job: { command: ['sh', '-c', 'echo built'], resource_requirements: { cpu_cores: AGENT_CPUS } },
    execution_context: { secrets: { DEPLOY_KEY: SECRET } },
  });
  expect(answer.status).toBe(201);
  jobId = answer.body.job_id;
  expect((await plane.api.waitForJob(jobId, 20_000)).state).toBe('Completed');
}, 60_000);

afterAll(async () => {
  await h.close();
  await new Promise((resolve) => server.close(resolve));
}, 30_000);

describe('--inspect', () => {
  /** The session id of the node's actor: the one whose snapshots name the node. */
  function sessionOfNode(): string | undefined {
    return heard.find((e) => e.type === '@xstate.snapshot' && e.snapshot?.context?.nodeId === agent.nodeId)?.sessionId;
  }

  it("registers the node's actor with the inspector, with the machine's definition", async () => {
    const session = await waitFor(sessionOfNode, 10_000, "a snapshot of the node's actor");
    const actor = heard.find((e) => e.type === '@xstate.actor' && e.sessionId === session);
    expect(actor?.name).toBe('node');
    expect(JSON.parse(actor?.definition ?? '{}')).toMatchObject({ id: 'node', states: { online: {} } });
  });

  it('sends the events the actor was sent and its snapshots through ready, busy and back', async () => {
    const session = sessionOfNode();
    // The job's end (job.ended, then ready) may still be on its way.
    await waitFor(() => heard.some((e) => e.sessionId === session && e.type === '@xstate.event' && e.event?.type === 'job.ended'), 10_000, 'job.ended');
    const events = heard.filter((e) => e.sessionId === session && e.type === '@xstate.event').map((e) => e.event);
    const types = events.map((e) => e?.type);
    for (const type of ['xstate.init', 'RegisterNode', 'auth.done', 'job.assigned', 'job.ended']) expect(types, type).toContain(type);
    expect(events.find((e) => e?.type === 'job.assigned')).toEqual({ type: 'job.assigned', jobId });
    expect(events.find((e) => e?.type === 'RegisterNode')).toMatchObject({ message: { type: 'RegisterNode' } });
    const states = heard.filter((e) => e.sessionId === session && e.type === '@xstate.snapshot').map((e) => JSON.stringify(e.snapshot?.value));
    const busy = states.findIndex((s) => s.includes('busy'));
    expect(states.findIndex((s) => s.includes('ready'))).toBeLessThan(busy);
    expect(states.slice(busy).some((s) => s.includes('ready'))).toBe(true);
  });

  it("sends no token, secret or payload: the node's token and the job's secret are nowhere", () => {
    const all = raw.join('\n');
    expect(all).not.toContain(SECRET);
    // JWTs (the registration and session tokens) start so; the job's command is a payload too.
    expect(all).not.toMatch(/eyJ[\w-]{10,}/);
    expect(all).not.toContain('echo built');
  });

  it('keeps only named fields of events and contexts', () => {
    const message = { type: 'RegisterNode', id: 'm1', data: { token: 'eyJsecret', node_info: {} } };
    expect(safeEvent({ type: 'RegisterNode', message })).toEqual({ type: 'RegisterNode', message: { type: 'RegisterNode', id: 'm1' } });
    expect(safeEvent({ type: 'xstate.init', input: { holdings: {}, clock: {} } })).toEqual({ type: 'xstate.init' });
    expect(safeEvent({ type: 'frame.error', error: { code: 'invalid_message', message: 'x' } })).toEqual({ type: 'frame.error', error: { code: 'invalid_message' } });
    expect(safeContext(undefined)).toBeUndefined();
  });
});
