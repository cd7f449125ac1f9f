// `/metrics` after a known workload on a real plane: a real agent runs three jobs (two
// complete, one fails), a raw protocol client registers, resumes, sends bad input and
// heartbeats, a registration and an API request fail authentication, and a flooding client
// goes over its message rate. The counters read back from the Prometheus text must match.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import { createLogger } from '../../observability/logger.js';
import { loadConfig } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import { TERMINAL_STATES, type JobState } from '../../supervisor/store/job-store.js';
import { NodeClient, registerNodeMessage } from '../supervisor/node-client.js';
import { startSecurityPlane } from '../supervisor/security-plane.js';
import { parseExposition, type Exposition } from './prometheus-text.js';
import { TCP_ONLY } from '../supervisor/tcp-only.js';

const POOL = { pool: 'metrics-agent' };
/** The flooding client's message rate: frames past its burst are dropped. */
const NODE_MESSAGE_RATE = 50;

let dir: string;
let plane: ControlPlane;
let agent: Agent;
let operator: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muster-metrics-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dir, 'plane'),
      ...TCP_ONLY,
      http: '127.0.0.1:0',
      nodeMessageRate: NODE_MESSAGE_RATE,
      nodeMessageBurst: NODE_MESSAGE_RATE,
    },
  });
  plane = await startControlPlane(config, createLogger({ level: 'silent' }));
  operator = await plane.tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
});

afterAll(async () => {
  await agent?.stop();
  await plane?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Exposition> {
  const res = await fetch(`${plane.httpUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return parseExposition(await res.text());
}

function tcpUrl(): string {
  return plane.nodeUrls.find((u) => u.startsWith('tcp:'))!;
}

/** Resolves when every job of `ids` has reached a terminal state (told by the plane's bus), with their states. */
function finished(ids: readonly string[], timeoutMs = 20_000): Promise<Map<string, JobState>> {
  const states = new Map<string, JobState>();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`jobs not finished after ${timeoutMs} ms: ${ids.filter((id) => !states.has(id)).join(', ')}`));
    }, timeoutMs);
    const stop = plane.bus.subscribe((event) => {
      if (event.kind !== 'job' || !ids.includes(event.job_id) || !TERMINAL_STATES.has(event.state)) return;
      states.set(event.job_id, event.state);
      if (states.size === ids.length) {
        clearTimeout(timer);
        stop();
        resolve(states);
      }
    });
  });
}

async function submit(command: string[]): Promise<string> {
  const res = await fetch(`${plane.httpUrl}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify({ job: { command }, selector: { tags: POOL } }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { job_id: string }).job_id;
}

describe('GET /metrics', () => {
  it('counts a known workload', async () => {
    const before = await scrape();
    expect(before.value('muster_node_registrations_total', { kind: 'new' })).toBe(0);

    // Three jobs on a real agent, submitted before it connects: each waits in the queue first.
    const ids = [await submit(['true']), await submit(['sh', '-c', 'echo hello']), await submit(['sh', '-c', 'exit 3'])];
    const done = finished(ids);
    expect((await scrape()).value('muster_queue_depth', { priority: 'Normal' })).toBe(3);
    agent = startAgent({
      urls: [tcpUrl()],
      token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }),
      workDir: join(dir, 'agent'),
      tags: POOL,
      logger: createLogger({ level: 'silent' }),
    });
    const states = await done;
    expect([...states.values()].sort()).toEqual(['Completed', 'Completed', 'Failed']);

    // A raw client: registers, heartbeats three times, drops its connection and resumes.
    const token = await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const first = await NodeClient.connect(tcpUrl());
    await first.register({ token, hostname: 'metrics-client' });
    for (let i = 0; i < 3; i++) first.heartbeat();
    await first.close();
    const again = await NodeClient.connect(tcpUrl());
    await again.register({
      token: first.sessionToken!,
      hostname: 'metrics-client',
      resume: { node_id: first.nodeId!, running_jobs: [], unacked_results: [] },
    });

    // Bad input from the registered node: a heartbeat without its fields.
    again.send({ type: 'Heartbeat', id: 'bad-1', data: {} });
    const invalid = await again.next('Error');

    // A registration with a token that is no token, and an API request with one.
    const refused = await NodeClient.connect(tcpUrl());
    refused.send(registerNodeMessage({ token: 'not-a-token', hostname: 'metrics-intruder' }));
    const authError = await refused.next('Error');
    await refused.closedWithin();
    const api = await fetch(`${plane.httpUrl}/v1/nodes`, { headers: { authorization: 'Bearer not-a-token' } });
    expect(api.status).toBe(401);
    const apiCode = ((await api.json()) as { error: { code: string } }).error.code;

    // A flood over the message rate: frames past the burst are dropped (and counted).
    const flooder = await NodeClient.connect(tcpUrl());
    await flooder.register({ token, hostname: 'metrics-flooder' });
    for (let i = 0; i < 3 * NODE_MESSAGE_RATE; i++) flooder.heartbeat();
    await flooder.next('Error');
    // Closed once the plane has read the whole flood (it pauses reading a node over its rate).
    await flooder.close();

    const m = await scrape();
    // Registrations: the agent, the client, the flooder; the client's resume.
    expect(m.value('muster_node_registrations_total', { kind: 'new' })).toBe(3);
    expect(m.value('muster_node_registrations_total', { kind: 'resumed' })).toBe(1);
    expect(m.value('muster_auth_failures_total', { kind: 'node', code: authError.message.data.code })).toBe(1);
    expect(m.value('muster_auth_failures_total', { kind: 'api', code: apiCode })).toBe(1);
    expect(m.sum('muster_auth_failures_total')).toBe(2);
    expect(m.value('muster_protocol_errors_total', { code: invalid.message.data.code })).toBeGreaterThanOrEqual(1);
    expect(m.value('muster_protocol_errors_total', { code: authError.message.data.code })).toBe(1);
    expect(m.value('muster_protocol_errors_total', { code: 'rate_limited' })).toBeGreaterThanOrEqual(1);
    expect(m.value('muster_messages_sent_total', { type: 'Error' })).toBe(m.sum('muster_protocol_errors_total'));

    // Jobs: three dispatched, their results stored by status, their durations observed.
    expect(m.value('muster_job_results_total', { status: 'Completed' })).toBe(2);
    expect(m.value('muster_job_results_total', { status: 'Failed' })).toBe(1);
    expect(m.value('muster_job_duration_seconds_count', { status: 'Completed' })).toBe(2);
    expect(m.value('muster_job_duration_seconds_count', { status: 'Failed' })).toBe(1);
    expect(m.value('muster_job_duration_seconds_bucket', { status: 'Failed', le: '+Inf' })).toBe(1);
    expect(m.value('muster_dispatch_latency_seconds_count')).toBe(3);
    expect(m.value('muster_dispatch_latency_seconds_sum')).toBeGreaterThan(0);
    expect(m.value('muster_messages_sent_total', { type: 'JobAssignment' })).toBe(3);
    expect(m.value('muster_messages_sent_total', { type: 'JobResultAck' })).toBe(3);
    expect(m.value('muster_messages_received_total', { type: 'JobAccepted' })).toBe(3);
    expect(m.value('muster_messages_received_total', { type: 'JobResult' })).toBe(3);
    expect(m.value('muster_messages_received_total', { type: 'RegisterNode' })).toBe(5);
    expect(m.value('muster_messages_sent_total', { type: 'RegisterAck' })).toBe(4);
    expect(m.value('muster_queue_depth', { priority: 'Normal' })).toBe(0);
    expect(m.value('muster_jobs', { state: 'Completed' })).toBe(2);
    expect(m.value('muster_jobs', { state: 'Failed' })).toBe(1);

    // Every frame is a message of a type, an invalid one, or one dropped over the rate.
    const dropped = m.value('muster_rate_limited_total', { kind: 'node_message' });
    expect(dropped).toBeGreaterThan(0);
    expect(m.sum('muster_messages_received_total') + dropped).toBe(m.value('muster_received_frames_total'));
    expect(m.value('muster_messages_received_total', { type: 'Heartbeat' })).toBeGreaterThanOrEqual(3 + 3 * NODE_MESSAGE_RATE - dropped);
    expect(m.value('muster_messages_received_total', { type: 'invalid' })).toBe(1);
    expect(m.value('muster_heartbeat_lag_seconds_count')).toBe(m.value('muster_messages_received_total', { type: 'Heartbeat' }));
    expect(m.value('muster_received_bytes_total')).toBeGreaterThan(m.sum('muster_messages_received_total'));
    expect(m.value('muster_sent_bytes_total')).toBeGreaterThan(0);

    // Connections: five let in over TCP; open now the agent's and the resumed client's.
    expect(m.value('muster_node_connections_opened_total', { transport: 'tcp' })).toBe(5);
    expect(m.value('muster_node_connections', { transport: 'tcp' })).toBe(2);
    // Nodes: the agent ready, the client (resumed) and the flooder registered.
    expect(m.sum('muster_nodes')).toBe(3);
    expect(m.value('muster_nodes', { state: 'ready' })).toBeGreaterThanOrEqual(1);
    // The process's own metrics are there too.
    expect(m.types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(m.types.get('muster_heartbeat_lag_seconds')).toBe('histogram');
    await again.close();
  });
});

describe('GET /metrics, limits', () => {
  it('counts connections refused over the per-address rate and API requests over the per-token rate', async () => {
    const p = await startSecurityPlane({ connectionRate: 0.1, connectionBurst: 2, banAfterViolations: 0, connectionProbation: 0, apiRequestRate: 0.1, apiRequestBurst: 2 });
    try {
      for (let i = 0; i < 2; i++) await (await p.client()).register({ token: await p.registrationToken() });
      const refused = await p.client();
      expect((await refused.next('Error')).message.data.code).toBe('rate_limited');
      const viewer = await p.apiToken('viewer');
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) statuses.push((await p.http('GET', '/v1/nodes', viewer)).status);
      expect(statuses).toEqual([200, 200, 429]);
      const m = parseExposition((await p.http('GET', '/metrics')).text);
      expect(m.value('muster_rate_limited_total', { kind: 'node_connection' })).toBe(1);
      expect(m.value('muster_rate_limited_total', { kind: 'api_token' })).toBe(1);
      expect(m.sum('muster_rate_limited_total')).toBe(2);
      // The refused connection is answered before any session: counted as an Error sent, not as a connection let in.
      expect(m.value('muster_protocol_errors_total', { code: 'rate_limited' })).toBe(1);
      expect(m.value('muster_messages_sent_total', { type: 'Error' })).toBe(1);
      expect(m.value('muster_node_connections_opened_total', { transport: 'tcp' })).toBe(2);
      expect(m.value('muster_node_registrations_total', { kind: 'new' })).toBe(2);
    } finally {
      await p.stop();
    }
  });
});
