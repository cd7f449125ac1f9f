// The agent's own metrics after a known workload: a real plane and a real agent in this
// process, the agent's registry served by the metrics server as `muster agent --metrics`
// serves it. Two jobs complete (one writes known output), one fails; then the plane restarts
// on the same address and the agent reconnects.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import { AgentMetrics } from '../../observability/agent-metrics.js';
import { createLogger } from '../../observability/logger.js';
import { startMetricsServer, type MetricsServer } from '../../observability/metrics-server.js';
import { loadConfig } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import { TERMINAL_STATES, type JobState } from '../../supervisor/store/job-store.js';
import { parseExposition, type Exposition } from './prometheus-text.js';

const OUTPUT = 'metrics-output-0123456789\n';

let dir: string;
let plane: ControlPlane;
let agent: Agent;
let metrics: AgentMetrics;
let server: MetricsServer;
let tcpUrl: string;

function startPlane(tcp: string): Promise<ControlPlane> {
  const config = loadConfig({
    env: {},
    overrides: { dataDir: join(dir, 'plane'), tcp, ws: 'off', grpc: 'off', unix: 'off', http: '127.0.0.1:0' },
  });
  return startControlPlane(config, createLogger({ level: 'silent' }));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muster-agent-metrics-'));
  plane = await startPlane('127.0.0.1:0');
  tcpUrl = plane.nodeUrls.find((u) => u.startsWith('tcp:'))!;
  metrics = new AgentMetrics();
  server = await startMetricsServer(metrics.registry, '127.0.0.1', 0);
  agent = startAgent({
    urls: [tcpUrl],
    token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }),
    workDir: join(dir, 'agent'),
    logger: createLogger({ level: 'silent' }),
    metrics,
    backoff: { baseMs: 20, capMs: 100 },
  });
});

afterAll(async () => {
  await agent?.stop();
  await server?.close();
  await plane?.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Exposition> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  return parseExposition(await res.text());
}

/**
 * The agent's next `event` (it counts in its metrics before it tells of the event), with a
 * deadline; ask before causing it, so that it cannot come first.
 */
function nextAgentEvent(event: 'registered' | 'disconnected', timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent: no ${event} within ${timeoutMs} ms`)), timeoutMs);
    agent.events.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function runJobs(bodies: object[]): Promise<JobState[]> {
  const operator = await plane.tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
  const ids: string[] = [];
  const states = new Map<string, JobState>();
  const settled = new Promise<void>((resolve) => {
    const stop = plane.bus.subscribe((event) => {
      if (event.kind !== 'job' || !TERMINAL_STATES.has(event.state)) return;
      states.set(event.job_id, event.state);
      if (ids.length === bodies.length && ids.every((id) => states.has(id))) {
        stop();
        resolve();
      }
    });
  });
  for (const body of bodies) {
    const res = await fetch(`${plane.httpUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(201);
    ids.push(((await res.json()) as { job_id: string }).job_id);
  }
  await settled;
  return ids.map((id) => states.get(id)!);
}

describe('agent metrics', () => {
  it('count jobs by outcome, output bytes, the connection state and reconnects', async () => {
    if (!agent.isRegistered) await nextAgentEvent('registered');
    expect((await scrape()).value('muster_agent_connection_state', { state: 'registered' })).toBe(1);
    const states = await runJobs([
      { job: { command: ['sh', '-c', `printf '${OUTPUT.trimEnd()}\\n'`] } },
      { job: { command: ['true'] } },
      { job: { command: ['sh', '-c', 'exit 2'] } },
    ]);
    expect(states).toEqual(['Completed', 'Completed', 'Failed']);
    const m = await scrape();
    expect(m.value('muster_agent_jobs_total', { outcome: 'Completed' })).toBe(2);
    expect(m.value('muster_agent_jobs_total', { outcome: 'Failed' })).toBe(1);
    expect(m.value('muster_agent_job_duration_seconds_count', { outcome: 'Completed' })).toBe(2);
    expect(m.value('muster_agent_job_duration_seconds_count', { outcome: 'Failed' })).toBe(1);
    expect(m.value('muster_agent_log_sent_bytes_total')).toBe(Buffer.byteLength(OUTPUT));
    expect(m.value('muster_agent_running_jobs')).toBe(0);
    expect(m.value('muster_agent_reconnects_total')).toBe(0);
    expect(m.sum('muster_agent_connection_state')).toBe(1);
    expect(m.types.get('process_resident_memory_bytes')).toBe('gauge');

    // The plane goes away and comes back on the same address: one reconnect.
    const tcp = new URL(tcpUrl).host;
    const gone = nextAgentEvent('disconnected');
    await plane.shutdown();
    await gone;
    expect((await scrape()).value('muster_agent_connection_state', { state: 'disconnected' })).toBe(1);
    const registeredAgain = nextAgentEvent('registered');
    plane = await startPlane(tcp);
    await registeredAgain;
    const back = await scrape();
    expect(back.value('muster_agent_connection_state', { state: 'registered' })).toBe(1);
    expect(back.value('muster_agent_reconnects_total')).toBeGreaterThanOrEqual(1);
    expect(back.value('muster_agent_jobs_total', { outcome: 'Completed' })).toBe(2);
  });

  it('serves nothing but GET /metrics', async () => {
    expect((await fetch(`${server.url}/`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`, { method: 'POST' })).status).toBe(404);
  });
});
