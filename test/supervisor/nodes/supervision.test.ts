// Supervision of node actors in a real in-process control plane over TCP: a node whose handling
// throws is stopped alone (answered `internal`, never with a stack trace, and closed), a failure
// that comes later as a rejected promise is answered `internal` and the connection stays, and a
// shutdown after such a crash leaves no timer or socket behind.
// The failure is injected at the seam between a session and the job coordinator, for one node only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createHook } from 'node:async_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import { JobCoordinator } from '../../../supervisor/jobs/job-coordinator.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import { NodeClient, type Received } from '../node-client.js';

const HEARTBEAT_INTERVAL_MS = 1_000;
/** Text of the injected failure: none of it may reach a node. */
const FAILURE_TEXT = 'disk full writing /var/lib/muster/secret-path.db';

const logger = createLogger({ level: 'silent' });
const dirs: string[] = [];

async function startPlane(): Promise<ControlPlane> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-supervision-'));
  dirs.push(dataDir);
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      tcp: '127.0.0.1:0',
      unix: 'off',
      http: '127.0.0.1:0',
      ws: '127.0.0.1:0',
      grpc: '127.0.0.1:0',
      registerTimeoutMs: 1_000,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    },
  });
  return startControlPlane(config, logger);
}

async function registeredNode(plane: ControlPlane, hostname: string): Promise<NodeClient> {
  const c = await NodeClient.connect(plane.nodeUrls[0]!);
  await c.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }), hostname });
  return c;
}

/** Makes the job coordinator fail for `nodeId` only: at once (`throw`) or later (`reject`). */
function failJobHandlingOf(nodeId: string, how: 'throw' | 'reject'): void {
  const original = JobCoordinator.prototype.handle;
  vi.spyOn(JobCoordinator.prototype, 'handle').mockImplementation(function (this: JobCoordinator, session, id, message) {
    if (id !== nodeId) return original.call(this, session, id, message);
    const err = new Error(FAILURE_TEXT);
    if (how === 'throw') throw err;
    return Promise.reject(err);
  });
}

function jobAccepted(id: string): { type: 'JobAccepted'; id: string; data: { job_id: string; attempt: number } } {
  return { type: 'JobAccepted', id, data: { job_id: randomUUID(), attempt: 1 } };
}

function views(plane: ControlPlane, nodeId: string | undefined): NodeView[] {
  return plane.api.listNodes().filter((v) => v.node_id === nodeId);
}

let probes = 0;

/**
 * Sends a Heartbeat and waits until the plane has taken it (frames are handled in order: the
 * answer to a probe sent after it, an unknown type, comes once it was); the node is then still `ready`.
 */
async function stillReady(plane: ControlPlane, c: NodeClient): Promise<void> {
  expect(c.isClosed).toBe(false);
  const sent = Date.now();
  c.heartbeat();
  const id = `probe-${++probes}`;
  c.send({ type: 'Probe', id, data: {} });
  expect((await c.next('Error')).message).toMatchObject({ reply_to: id, data: { code: 'unknown_type', fatal: false } });
  const v = views(plane, c.nodeId)[0];
  expect(Date.parse(v?.last_heartbeat ?? '')).toBeGreaterThanOrEqual(sent);
  expect(views(plane, c.nodeId).map((v) => v.state)).toEqual(['ready']);
  expect(c.unread()).toEqual([]);
}

/**
 * An `internal` Error that gives nothing away: no text of the failure, no stack. Fatal when
 * the plane closes after it (the actor failed), not when the connection stays.
 */
function expectOpaqueInternal(error: Received<'Error'>, replyTo: string, fatal: boolean): void {
  expect(error.message.data).toMatchObject({ code: 'internal', fatal });
  expect(error.message.reply_to).toBe(replyTo);
  const text = JSON.stringify(error.message);
  expect(text).not.toContain('disk full');
  expect(text).not.toContain('/var/lib');
  expect(text).not.toMatch(/\bat .*:\d+:\d+/);
}

/** Timers and TCP handles keeping the event loop alive. */
function activeHandles(): Record<string, number> {
  const counts: Record<string, number> = { Timeout: 0, TCPSocketWrap: 0, TCPServerWrap: 0 };
  for (const resource of process.getActiveResourcesInfo()) if (resource in counts) counts[resource]! += 1;
  return counts;
}

/**
 * Every timer and TCP handle created from now on that is not yet closed, cleared or fired.
 * Exact where a count against a baseline is not: the test runner's own timers come and go.
 */
class HandleTracker {
  private readonly open = new Map<number, string>();
  private ignoring = false;
  private emptied: (() => void) | undefined;
  private readonly hook = createHook({
    init: (id, type) => {
      if (!this.ignoring && ['Timeout', 'TCPWRAP', 'TCPSERVERWRAP'].includes(type)) this.open.set(id, type);
    },
    destroy: (id) => {
      if (this.open.delete(id) && this.open.size === 0) this.emptied?.();
    },
  }).enable();

  /** Types of the handles still open. */
  still(): string[] {
    return [...this.open.values()];
  }

  /**
   * Waits until none is open (told by the destroy hook); past `timeoutMs` it fails, naming the
   * handles still open. The deadline timer is not tracked.
   */
  async settle(timeoutMs = 5_000): Promise<string[]> {
    if (this.open.size > 0) {
      await new Promise<void>((resolve, reject) => {
        this.ignoring = true;
        const deadline = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms: ${this.still().join(', ')}`)), timeoutMs);
        this.ignoring = false;
        this.emptied = () => {
          clearTimeout(deadline);
          resolve();
        };
      });
    }
    this.hook.disable();
    return this.still();
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

// First in the file, so that no other plane is still winding down when the baseline is taken.
describe('shutdown after a crash', () => {
  it('leaves no timer or socket behind', async () => {
    const baseline = activeHandles();
    const handles = new HandleTracker();
    const plane = await startPlane();
    const victim = await registeredNode(plane, 'victim.example.test');
    const survivor = await registeredNode(plane, 'survivor.example.test');
    survivor.startHeartbeats(HEARTBEAT_INTERVAL_MS / 4);
    failJobHandlingOf(victim.nodeId!, 'throw');
    victim.send(jobAccepted('acc-4'));
    expect((await victim.next('Error')).message.data.code).toBe('internal');
    await victim.closedWithin();
    // A job the scheduler places and a node mid-registration: both hold timers until shutdown.
    await plane.api.submitJob({
      job: {
        name: 'sleep',
        image: '',
        command: ['sleep', '60'],
        environment: {},
        timeout: { secs: 60, nanos: 0 },
        resource_requirements: { cpu_cores: 1, memory_mb: 64, disk_gb: 0 },
      },
      execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
      priority: 'Normal',
      selector: {},
      max_attempts: 3,
    });
    await survivor.next('JobAssignment');
    const registering = await NodeClient.connect(plane.nodeUrls[0]!);

    await plane.shutdown();
    await survivor.closedWithin();
    await registering.closedWithin();
    // Sockets finish closing a moment after the peer has seen the close: wait for that, then look.
    expect(await handles.settle()).toEqual([]);
    const now = activeHandles();
    for (const [kind, count] of Object.entries(baseline)) expect(now[kind], kind).toBeLessThanOrEqual(count);
  });
});

describe('a node actor that fails', () => {
  let plane: ControlPlane;
  let other: NodeClient;
  const clients: NodeClient[] = [];

  beforeAll(async () => {
    plane = await startPlane();
    other = await registeredNode(plane, 'other.example.test');
    other.startHeartbeats(HEARTBEAT_INTERVAL_MS / 4);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    // The other node went on as if nothing happened, and its job messages are still handled.
    // (An attempt it never held: refused, non-fatal, PROTOCOL.md 4 and README "Jobs".)
    other.send(jobAccepted('other-1'));
    const refusal = await other.next('Error');
    expect(refusal.message.data).toMatchObject({ code: 'invalid_message', fatal: false, field: 'data.job_id' });
    await stillReady(plane, other);
  });

  afterAll(async () => {
    await other?.close();
    await plane?.shutdown();
  });

  it('stops the actor whose handling throws, answers internal, closes, and forgets the live node', async () => {
    const victim = await registeredNode(plane, 'victim.example.test');
    clients.push(victim);
    const nodeId = victim.nodeId!;
    failJobHandlingOf(nodeId, 'throw');
    const connectionsBefore = (await plane.api.stats()).active_connections!;

    victim.send(jobAccepted('acc-1'));
    expectOpaqueInternal(await victim.next('Error'), 'acc-1', true);
    await victim.closedWithin();
    expect(victim.unread()).toEqual([]);

    expect(views(plane, nodeId).map((v) => v.state)).toEqual(['dead']);
    const stats = await plane.api.stats();
    expect(stats.active_connections).toBe(connectionsBefore - 1);
    expect(stats.nodes).toBe(1);
  });

  it('lets a node whose actor failed come back with its session token', async () => {
    const victim = await registeredNode(plane, 'victim.example.test');
    clients.push(victim);
    const nodeId = victim.nodeId!;
    failJobHandlingOf(nodeId, 'throw');
    victim.send(jobAccepted('acc-2'));
    expectOpaqueInternal(await victim.next('Error'), 'acc-2', true);
    await victim.closedWithin();

    const back = await NodeClient.connect(plane.nodeUrls[0]!);
    clients.push(back);
    const ack = await back.register({
      token: victim.sessionToken!,
      hostname: 'victim.example.test',
      resume: { node_id: nodeId, running_jobs: [], unacked_results: [] },
    });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    await stillReady(plane, back);
  });

  it('answers internal to a job message whose handling fails later, and keeps the connection', async () => {
    const victim = await registeredNode(plane, 'victim.example.test');
    clients.push(victim);
    failJobHandlingOf(victim.nodeId!, 'reject');

    victim.send(jobAccepted('acc-3'));
    expectOpaqueInternal(await victim.next('Error'), 'acc-3', false);
    await stillReady(plane, victim);
  });
});
