// The cluster's failure scenario (issue 10): three replicas as real `muster serve` processes on
// one real nats-server, four real agents that know every replica, 200 trivial jobs in three
// waves; during each wave one fault: a replica killed with `kill -9`, then the NATS server killed
// and restarted on its store, then one replica cut off from NATS by a TCP proxy while its nodes
// stay connected to it. After each wave the invariant checker reads the stored records: every job
// final, one result per final attempt, no overlapping attempts (stored, and on the nodes by the
// agents' logs), no write under a stale token, no healthy node declared dead.
//
// Lean on purpose (`npm test` stays under three minutes): leases of 3 s (FAST_CLUSTER_ENV), jobs
// of 0.1 s taking one core each (an agent runs as many at once as the machine has cores).
import { connect } from '@nats-io/transport-node';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { JetStreamJobStore } from '../../supervisor/cluster/jetstream-job-store.js';
import type { JobAnswer } from '../../supervisor/admin/wire-types.js';
import { SecretBox } from '../../supervisor/store/secret-box.js';
import { Harness, TERMINAL, waitFor, type AgentProcess } from '../e2e/harness.js';
import { TcpProxy } from '../supervisor/cluster/tcp-proxy.js';
import { checkCluster, type CheckReport } from './invariant-checker.js';
import { NatsServer } from './nats-server.js';
import { ReplicaCluster, agentNodeIds, agentRuns, type Replica } from './replica-process.js';

const WAVES = [70, 70, 60];
/** Results of a wave stored before its fault: jobs are then done, running and queued at once. */
const DONE_BEFORE_FAULT = 15;
/** Revisions of each job the bucket keeps: every write of a job that is moved a few times. */
const JOB_HISTORY = 32;
const WAVE_TIMEOUT_MS = 40_000;

const h = new Harness();
const servers: NatsServer[] = [];
let proxy: TcpProxy | undefined;

afterAll(async () => {
  proxy?.heal();
  await h.close();
  await proxy?.close();
  // Newest first: the first server owns the store directory the restarted one reused.
  for (const server of servers.reverse()) await server.stop();
}, 60_000);

/**
 * Creates the job bucket before any replica does, keeping each job's history (the replicas bind
 * to it as it is): without it the checker cannot compare a write's token with the one before it.
 */
async function keepJobHistory(natsUrl: string): Promise<void> {
  const nc = await connect({ servers: natsUrl });
  try {
    const store = await JetStreamJobStore.open({ nc, box: SecretBox.fromKey(randomBytes(32)), history: JOB_HISTORY });
    await store.close();
  } finally {
    await nc.close();
  }
}

/** Submits `count` trivial jobs to `replica` in one batch (all stored or none). */
async function submitWave(replica: Replica, count: number): Promise<string[]> {
  const job = { command: ['sh', '-c', 'sleep 0.1; echo done'], resource_requirements: { cpu_cores: 1 } };
  const answer = await replica.api.request<{ job_ids: string[] }>('POST', '/v1/jobs', { jobs: Array.from({ length: count }, () => ({ job })) });
  if (answer.status !== 201) throw new Error(`batch submit answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body.job_ids;
}

/** The jobs of `ids` as `replica` shows them (any replica shows every job of the cluster). */
async function jobsOf(replica: Replica, ids: readonly string[]): Promise<JobAnswer[]> {
  const wanted = new Set(ids);
  const answer = await replica.api.request<{ jobs: JobAnswer[] }>('GET', '/v1/jobs?limit=1000');
  if (answer.status !== 200) throw new Error(`GET /v1/jobs answered ${answer.status}`);
  return answer.body.jobs.filter((j) => wanted.has(j.job_id));
}

/** Jobs of the cluster that ended, by the replica's counts (its index of the bucket: no record read per poll). */
async function endedCount(replica: Replica): Promise<number> {
  const answer = await replica.api.request<Record<string, number>>('GET', '/v1/stats');
  if (answer.status !== 200) throw new Error(`GET /v1/stats answered ${answer.status}`);
  return [...TERMINAL].reduce((sum, state) => sum + (answer.body[`jobs_${state}`] ?? 0), 0);
}

/** Waits until `total` jobs of the cluster have ended (every earlier wave's did). */
function waitForEnded(replica: Replica, total: number): Promise<number> {
  return waitFor(async () => {
    const ended = await endedCount(replica);
    return ended >= total ? ended : undefined;
  }, WAVE_TIMEOUT_MS, `${total} jobs ended (seen by ${replica.id})`);
}

/** The jobs of `ids` that did not complete, as `replica` shows them: none, in every wave. */
async function notCompleted(replica: Replica, ids: readonly string[]): Promise<JobAnswer[]> {
  const jobs = await jobsOf(replica, ids);
  expect(jobs.length).toBe(ids.length);
  return jobs.filter((j) => j.state !== 'Completed');
}

/** The checker over the whole bucket, on a connection of its own. */
async function check(natsUrl: string, cluster: ReplicaCluster, agents: readonly AgentProcess[], submitted: readonly string[]): Promise<CheckReport> {
  const nc = await connect({ servers: natsUrl });
  try {
    return await checkCluster(nc, {
      expectedJobs: submitted,
      // No agent is killed or stopped here: every node stays healthy throughout.
      healthyNodes: agentNodeIds(agents),
      deaths: cluster.deaths(),
      runs: agentRuns(agents),
    });
  } finally {
    await nc.close();
  }
}

/**
 * For a failure message: every log line of the replicas and agents that names a node or job of
 * the violations (at most 40 per violation), oldest first, each with the process it came from.
 */
function evidence(report: CheckReport, cluster: ReplicaCluster, agents: readonly AgentProcess[]): string {
  const sources = [
    ...cluster.replicas.map((r) => ({ name: r.id, lines: r.logLines() })),
    ...agents.map((a) => ({ name: `agent ${a.nodeId.slice(0, 8)}`, lines: a.proc.jsonLines() })),
  ];
  return report.violations
    .map((v) => {
      const about = (l: Record<string, unknown>): boolean => (v.node_id !== undefined && l.node_id === v.node_id) || (v.job_id !== undefined && l.job_id === v.job_id);
      const lines = sources
        .flatMap(({ name, lines }) => lines.filter(about).map((l) => ({ name, l })))
        .sort((x, y) => Number(x.l.time) - Number(y.l.time))
        .slice(-40)
        .map(({ name, l }) => `  ${new Date(Number(l.time)).toISOString()} ${name}: ${String(l.msg)} ${JSON.stringify(l)}`);
      return [`${v.invariant}: ${v.detail}`, ...lines].join('\n');
    })
    .join('\n');
}

function expectClean(report: CheckReport, submitted: readonly string[], cluster: ReplicaCluster, agents: readonly AgentProcess[]): void {
  expect(report.violations, evidence(report, cluster, agents)).toEqual([]);
  expect(report.unchecked).toEqual([]);
  expect(report.jobs).toBe(submitted.length);
  expect(report.fencedWritesChecked).toBeGreaterThan(0);
}

describe('a cluster of three replicas', () => {
  it('loses no job and runs none twice through a replica killed, a NATS restart and a replica cut off from NATS', async () => {
    let nats = await NatsServer.start();
    servers.push(nats);
    // Mints the cluster's tokens meanwhile.
    const cluster = new ReplicaCluster(h, { natsUrl: nats.url });
    await keepJobHistory(nats.url);
    proxy = await TcpProxy.start(nats.port);
    // C reaches NATS only through the proxy, so that it alone can be cut off.
    const [a, b, c] = await Promise.all([cluster.start('replica-a'), cluster.start('replica-b'), cluster.start('replica-c', { natsUrl: proxy.url })]);
    // One node starts on A and one on B, two on C: C still has nodes when it is cut off.
    const agents = await Promise.all([cluster.startAgent(a), cluster.startAgent(b), cluster.startAgent(c), cluster.startAgent(c)]);
    const submitted: string[] = [];

    // Wave 1: kill -9 of A, which took the wave's jobs and serves a node.
    const wave1 = await submitWave(a, WAVES[0]!);
    submitted.push(...wave1);
    await waitForEnded(b, DONE_BEFORE_FAULT);
    await a.kill9();
    await waitForEnded(b, submitted.length);
    expect(await notCompleted(b, wave1)).toEqual([]);
    await cluster.settled(WAVE_TIMEOUT_MS);
    expectClean(await check(nats.url, cluster, agents, submitted), submitted, cluster, agents);

    // Wave 2: the NATS server killed and restarted on the same port and store (C's proxy dials it again).
    const wave2 = await submitWave(b, WAVES[1]!);
    submitted.push(...wave2);
    await waitForEnded(b, submitted.length - wave2.length + DONE_BEFORE_FAULT);
    await nats.kill9();
    nats = await nats.restart();
    servers.push(nats);
    await waitForEnded(b, submitted.length);
    expect(await notCompleted(b, wave2)).toEqual([]);
    await cluster.settled(WAVE_TIMEOUT_MS);
    expectClean(await check(nats.url, cluster, agents, submitted), submitted, cluster, agents);

    // Wave 3: C cut off from NATS while its nodes stay connected to it: it fences itself and lets
    // them go, and B takes them over once C's lease has aged out.
    await waitFor(async () => (await b.api.nodes()).some((n) => n.owner === c.id && n.state !== 'dead'), 15_000, `a node served by ${c.id}`);
    const wave3 = await submitWave(c, WAVES[2]!);
    submitted.push(...wave3);
    await waitForEnded(b, submitted.length - wave3.length + DONE_BEFORE_FAULT);
    proxy.cut();
    await waitForEnded(b, submitted.length);
    expect(await notCompleted(b, wave3)).toEqual([]);
    // Every node is served by B, the one replica left that reaches NATS.
    await waitFor(async () => (await b.api.nodes()).filter((n) => n.owner === b.id && n.state !== 'dead').length === agents.length, 15_000, `every node served by ${b.id}`);
    await cluster.settled(WAVE_TIMEOUT_MS);
    expectClean(await check(nats.url, cluster, agents, submitted), submitted, cluster, agents);
  }, 150_000);
});
