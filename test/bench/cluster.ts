// `npm run bench -- cluster`: cluster mode (issue 10) against the embedded plane, each replica a
// `muster serve --nats` process on a real nats-server started here. Three parts, each run
// BENCH_CLUSTER_RUNS times, each time on a new server and new replicas:
//
//   throughput   trivial jobs end to end (nodes of dispatch-worker.ts accept and finish each at
//                once; batches of BENCH_CLUSTER_BATCH over the admin API) with the embedded plane
//                (the baseline, same run), with 1 replica, and with 3 (jobs submitted to the
//                replicas' APIs in turn, the node workers spread over them, rebalancing off):
//                jobs/s, and CPU per job of the plane processes and of nats-server;
//   failover     BENCH_CLUSTER_FAILOVER_NODES nodes on one of 3 replicas, each knowing all three
//                listeners; `kill -9` of that replica; at once one job per node (meant for it
//                alone, by tag) submitted to the other two. Per node: kill → RegisterAck of its
//                resumed session on another replica, and kill → its job assigned (dispatchable);
//   at rest      BENCH_CLUSTER_REST_NODES heartbeating nodes (fleet-worker.ts) over 3 replicas,
//                nothing changing: nats-server's /varz in_msgs/out_msgs over BENCH_CLUSTER_REST_S
//                seconds, then the same window again with a tap on `>` that counts by subject.
//
//   BENCH_CLUSTER_PARTS           which parts, comma-separated (default throughput,failover,rest)
//   BENCH_CLUSTER_RUNS            runs of each part (default 2)
//   BENCH_CLUSTER_PLANES          which throughput set-ups, by replica count, 0 the embedded plane
//                                 (default 0,1,3; the summary needs all three)
//   BENCH_CLUSTER_TAP             1: also count what is published per job, by subject, with a tap
//                                 on `>` (which costs the server a delivery per message)
//   BENCH_CLUSTER_NODES           nodes in the throughput part (default 1000)
//   BENCH_CLUSTER_WORKERS         node worker processes (default 3)
//   BENCH_CLUSTER_JOBS            jobs per throughput measurement (default 10000)
//   BENCH_CLUSTER_BATCH           jobs per batch request (default 500, at most 1000)
//   BENCH_CLUSTER_IN_FLIGHT       batch requests in flight (default 4)
//   BENCH_CLUSTER_FAILOVER_NODES  nodes on the replica killed (default 3000)
//   BENCH_CLUSTER_REST_NODES      nodes at rest (default 10000)
//   BENCH_CLUSTER_REST_S          seconds of each at-rest window (default 20)
//   BENCH_CLUSTER_LOG_LEVEL       the replicas' --log-level (default warn), logged to BENCH_CLUSTER_LOG_DIR
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { OWNERS_BUCKET } from '../../supervisor/cluster/node-ownership.js';
import { DEFAULTS } from '../../supervisor/config.js';
import { NatsServer } from '../cluster/nats-server.js';
import { mintApiToken, NODE_TAG } from './bench-node.js';
import { backlog, epochMs, intFromEnv, jobSubmitters, loadAverage, startWorkers, Stamps, type BacklogResult, type Submitted } from './dispatch.js';
import type { DispatchReport, ResumeStamp } from './dispatch-worker.js';
import { startFleetWorkers, type Worker } from './fleet.js';
import { cpuSeconds } from './proc-stats.js';
import { planeNodeArgs, startPlane, stop, type RunningPlane } from './processes.js';
import { summarize, type Summary } from './quantiles.js';

const PARTS = (process.env.BENCH_CLUSTER_PARTS ?? 'throughput,failover,rest').split(',').map((p) => p.trim());
const RUNS = Math.max(1, intFromEnv('BENCH_CLUSTER_RUNS', 2));
const PLANES = (process.env.BENCH_CLUSTER_PLANES ?? '0,1,3').split(',').map((p) => Number(p.trim()));
const TAP = process.env.BENCH_CLUSTER_TAP === '1';
const NODES = intFromEnv('BENCH_CLUSTER_NODES', 1_000);
const WORKERS = Math.max(1, intFromEnv('BENCH_CLUSTER_WORKERS', 3));
const JOBS = intFromEnv('BENCH_CLUSTER_JOBS', 10_000);
const BATCH = Math.max(1, Math.min(intFromEnv('BENCH_CLUSTER_BATCH', 500), 1_000));
const IN_FLIGHT = Math.max(1, intFromEnv('BENCH_CLUSTER_IN_FLIGHT', 4));
const FAILOVER_NODES = intFromEnv('BENCH_CLUSTER_FAILOVER_NODES', 3_000);
const REST_NODES = intFromEnv('BENCH_CLUSTER_REST_NODES', 10_000);
const REST_S = Math.max(1, intFromEnv('BENCH_CLUSTER_REST_S', 20));
/** Jobs run before each measurement, so that JIT and first-use costs are not in it. */
const WARM_UP_JOBS = 1_000;
/** How long the failover part waits for every node to be back and have run its job. */
const FAILOVER_WAIT_MS = 120_000;
/** A throughput measurement that takes longer than this says which jobs it still waits for. */
const STUCK_AFTER_MS = 30_000;
/** ...and fails when no job at all finished for this long. */
const STALL_MS = 60_000;

/** Nodes do not heartbeat in the job parts: every message is part of a job. */
const JOB_PARTS_ENV = { MUSTER_HEARTBEAT_INTERVAL_MS: '600000', MUSTER_RETRY_BACKOFF_MS: '0' };

/** One token secret for every plane of the run, also in `<dir>/secret` for the workers to mint from. */
/** A token secret shared by replicas: its text (MUSTER_JWT_SECRET) and a directory holding it as `secret`, to mint tokens from. */
export interface Secret {
  dir: string;
  text: string;
}

/** A nats-server with its monitoring endpoint, and the replicas on it. */
interface Cluster {
  nats: NatsServer;
  monitorUrl: string;
  replicas: RunningPlane[];
}

export async function runCluster(): Promise<void> {
  const unknown = PARTS.filter((p) => !['throughput', 'failover', 'rest'].includes(p));
  if (unknown.length > 0) throw new Error(`unknown BENCH_CLUSTER_PARTS ${unknown.join(', ')} (known: throughput, failover, rest)`);
  const secret = makeSecret();
  try {
    console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; load average at start ${loadAverage()}`);
    console.log(`planes' warnings and errors: ${planeLogDir()}/plane-<n>[-<replica id>].log`);
    console.log(`cluster: replicas are \`muster serve --nats\` processes on one nats-server (JetStream, R1) started here; ${RUNS} runs of each part\n`);
    for (let run = 1; run <= RUNS; run++) {
      if (PARTS.includes('throughput')) await throughput(secret, run);
      if (PARTS.includes('failover')) await failover(secret, run);
      if (PARTS.includes('rest')) await atRest(secret, run);
    }
    console.log(`load average at the end ${loadAverage()} (other processes on the machine skew every figure)`);
  } finally {
    rmSync(secret.dir, { recursive: true, force: true });
  }
}

// ---- throughput -------------------------------------------------------------------------------

interface ThroughputFigures {
  label: string;
  result: BacklogResult;
  planeUsPerJob: number;
  natsUsPerJob: number;
}

async function throughput(secret: Secret, run: number): Promise<void> {
  console.log(
    `== throughput, run ${run}: ${JOBS} trivial jobs, ${NODES} nodes over ${WORKERS} worker processes, batches of ${BATCH} ` +
      `(${IN_FLIGHT} in flight) after ${WARM_UP_JOBS} warm-up jobs`,
  );
  const figures: ThroughputFigures[] = [];
  for (const [replicas, label] of [
    [0, 'embedded plane (SQLite), baseline'],
    [1, '1 replica on NATS'],
    [3, '3 replicas on NATS'],
  ] as const) {
    if (!PLANES.includes(replicas)) continue;
    try {
      figures.push(await jobsOn(secret, replicas, label));
    } catch (err) {
      console.log(`  ${label}: FAILED, ${String(err)}\n`);
    }
  }
  if (figures.length < 3) return;
  const [embedded, one, three] = figures as [ThroughputFigures, ThroughputFigures, ThroughputFigures];
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  console.log(`summary, run ${run}:`);
  for (const f of figures) {
    console.log(
      `  ${f.label.padEnd(36)} ${String(f.result.jobsPerSecond).padStart(6)} jobs/s   plane CPU per job ${f.planeUsPerJob.toFixed(0).padStart(5)} µs` +
        (f === embedded ? '' : ` (× ${(f.planeUsPerJob / embedded.planeUsPerJob).toFixed(2)} the embedded), nats-server ${f.natsUsPerJob.toFixed(0)} µs`),
    );
  }
  console.log(
    `  aims: ≥ 2,000 jobs/s on 1 replica ${verdict(one.result.jobsPerSecond >= 2_000)}; 3 replicas ≥ 1.5 × 1 replica ` +
      `${verdict(three.result.jobsPerSecond >= 1.5 * one.result.jobsPerSecond)} (× ${(three.result.jobsPerSecond / one.result.jobsPerSecond).toFixed(2)}); ` +
      `replica CPU per job ≤ 2 × embedded ${verdict(one.planeUsPerJob <= 2 * embedded.planeUsPerJob)} (1 replica), ` +
      `${verdict(three.planeUsPerJob <= 2 * embedded.planeUsPerJob)} (3 replicas)\n`,
  );
}

/** Jobs through the embedded plane (`replicas` 0) or through that many replicas on a new NATS server. */
async function jobsOn(secret: Secret, replicas: number, label: string): Promise<ThroughputFigures> {
  // The workers spread the nodes evenly; rebalancing would shed some while the ramp is uneven.
  const cluster = replicas === 0 ? undefined : await startCluster(secret, replicas, { ...JOB_PARTS_ENV, MUSTER_REBALANCE_INTERVAL_MS: '0' });
  const planes = cluster?.replicas ?? [await startPlane({ ...JOB_PARTS_ENV, MUSTER_JWT_SECRET: secret.text }, planeOptions())];
  const workers: ChildProcess[] = [];
  let watchdog: NodeJS.Timeout | undefined;
  try {
    const stamps = new Stamps();
    const tcpUrls = planes.map((p) => p.tcpUrl.href);
    const errors = new ErrorCounts();
    const onReport = (r: DispatchReport): void => errors.add(r);
    const failoverUrls = replicas > 1 ? tcpUrls : undefined;
    const ready = await startWorkers({ tcpUrls, dataDir: secret.dir, nodes: NODES, workers: WORKERS, onReport, failoverUrls }, workers, stamps);
    const failed = ready.reduce((n, r) => n + r.failed, 0);
    if (failed > 0) console.log(`  ${failed} nodes failed to register: ${ready.find((r) => r.firstError)?.firstError}`);
    const token = await mintApiToken(secret.dir, 'operator');
    const submitters = jobSubmitters(
      planes.map((p) => p.httpUrl),
      token,
    );
    const submitted: string[] = [];
    const submitBatch = async (count: number): Promise<Submitted[]> => {
      const batch = await submitters.submitBatch(count);
      for (const s of batch) submitted.push(s.jobId);
      return batch;
    };
    watchdog = setInterval(() => {
      reportStuck(planes, token, submitted, stamps).catch((err: unknown) => console.log(`  (could not ask about stuck jobs: ${String(err)})`));
    }, STUCK_AFTER_MS);
    const pids = planes.map((p) => p.pid);
    const figures = { planeUsPerJob: 0, natsUsPerJob: 0 };
    const measure = (name: string, jobs: number): Promise<BacklogResult> =>
      unlessStalled(backlog(name, jobs, BATCH, IN_FLIGHT, submitBatch, pids, workers, stamps), stamps, errors);
    await measure(`${label}, warm-up`, WARM_UP_JOBS);
    const nats0 = cluster === undefined ? 0 : cpuSeconds(cluster.nats.pid);
    const varz0 = cluster === undefined ? undefined : await varz(cluster);
    const tap = cluster !== undefined && TAP ? await startTap(cluster) : undefined;
    const result = await measure(label, JOBS);
    clearInterval(watchdog);
    if (tap !== undefined) {
      const tapped = await tap.stop();
      console.log(`  messages published per job, by subject (BENCH_CLUSTER_TAP; the tap's own deliveries are not in /varz's figures below):`);
      for (const [subject, count] of tapped.bySubject.slice(0, 12)) console.log(`    ${(count / JOBS).toFixed(2).padStart(6)}  ${subject}`);
    }
    errors.print();
    if (cluster !== undefined) {
      const natsCpu = cpuSeconds(cluster.nats.pid) - nats0;
      const varz1 = await varz(cluster);
      console.log(
        `  nats-server CPU ${((100 * natsCpu) / result.seconds).toFixed(0)}% of a core, ${((natsCpu * 1e6) / JOBS).toFixed(0)} µs per job; ` +
          `NATS messages per job ${((varz1.in_msgs - varz0!.in_msgs) / JOBS).toFixed(1)} in, ${((varz1.out_msgs - varz0!.out_msgs) / JOBS).toFixed(1)} out`,
      );
      figures.natsUsPerJob = (natsCpu * 1e6) / JOBS;
    }
    console.log('');
    figures.planeUsPerJob = (result.planeCpuSeconds * 1e6) / JOBS;
    return { label, result, ...figures };
  } finally {
    clearInterval(watchdog);
    await stopWorkers(workers);
    if (cluster === undefined) await planes[0]!.stop();
    else await stopCluster(cluster);
  }
}

/** Messages other than a job's the plane sent the nodes (`Error` by code and message, `Shutdown` by reason). */
class ErrorCounts {
  readonly counts = new Map<string, number>();

  add(report: DispatchReport): void {
    if (report.type !== 'errors') return;
    for (const [key, n] of Object.entries(report.errors)) this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  print(): void {
    for (const [key, n] of this.counts) console.log(`  the plane sent the nodes ${n} × ${key}`);
  }
}

/** A measurement whose jobs stop finishing for STALL_MS fails (with what the nodes were told) instead of hanging. */
async function unlessStalled<T>(measuring: Promise<T>, stamps: Stamps, errors: ErrorCounts): Promise<T> {
  let seen = -1;
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setInterval(() => {
      if (stamps.byJob.size !== seen) {
        seen = stamps.byJob.size;
        return;
      }
      errors.print();
      reject(new Error(`no job finished for ${STALL_MS / 1000} s: stalled`));
    }, STALL_MS);
  });
  try {
    return await Promise.race([measuring, stalled]);
  } finally {
    clearInterval(timer);
  }
}

/** Jobs without an acknowledged result yet: how many, and what the replicas say of a few. */
async function reportStuck(planes: RunningPlane[], token: string, submitted: string[], stamps: Stamps): Promise<void> {
  const open = submitted.filter((j) => !stamps.byJob.has(j));
  if (open.length === 0) return;
  const seen: string[] = [];
  for (const jobId of open.slice(0, 3)) {
    const answers = await Promise.all(
      planes.map(async (p, i) => {
        const response = await fetch(`${p.httpUrl}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
        return `r${i}: ${response.status} ${(await response.text()).slice(0, 200)}`;
      }),
    );
    seen.push(`${jobId} → ${answers.join(' | ')}`);
  }
  console.log(`  still waiting for ${open.length} of ${submitted.length} jobs; e.g.\n    ${seen.join('\n    ')}`);
}

// ---- failover ---------------------------------------------------------------------------------

async function failover(secret: Secret, run: number): Promise<void> {
  console.log(
    `== failover, run ${run}: ${FAILOVER_NODES} nodes on replica r0 of 3 (default lease: leaseTtlMs ${DEFAULTS.leaseTtlMs}, leaseRenewMs ${DEFAULTS.leaseRenewMs}; ` +
      `rebalancing off, so that they stay there), then kill -9 of r0`,
  );
  // Rebalancing would move the nodes off r0 (it holds all of them) before the kill.
  const cluster = await startCluster(secret, 3, { ...JOB_PARTS_ENV, MUSTER_REBALANCE_INTERVAL_MS: '0' });
  const workers: ChildProcess[] = [];
  const backAt = new Map<string, ResumeStamp>();
  const resumeFailures: string[] = [];
  let allBack: () => void = () => {};
  const everyoneBack = new Promise<void>((resolve) => (allBack = resolve));
  const errors = new ErrorCounts();
  const onReport = (report: DispatchReport): void => {
    errors.add(report);
    if (report.type === 'resumed') {
      for (const stamp of report.resumed) backAt.set(stamp[0], stamp);
      if (backAt.size >= FAILOVER_NODES) allBack();
    } else if (report.type === 'resume-failed') resumeFailures.push(`${report.hostname} after ${report.tries} tries: ${report.error}`);
  };
  try {
    const [victim, ...survivors] = cluster.replicas as [RunningPlane, ...RunningPlane[]];
    const stamps = new Stamps();
    const failoverUrls = cluster.replicas.map((r) => r.tcpUrl.href);
    const registering = performance.now();
    const ready = await startWorkers(
      { tcpUrls: [victim.tcpUrl.href], dataDir: secret.dir, nodes: FAILOVER_NODES, workers: WORKERS, failoverUrls, onReport },
      workers,
      stamps,
    );
    const hostnames = ready.flatMap((r) => r.hostnames);
    console.log(
      `  ${hostnames.length} nodes registered on r0 in ${((performance.now() - registering) / 1000).toFixed(1)} s` +
        `${ready.some((r) => r.failed > 0) ? `, ${ready.reduce((n, r) => n + r.failed, 0)} failed: ${ready.find((r) => r.firstError)?.firstError}` : ''}`,
    );
    const token = await mintApiToken(secret.dir, 'operator');
    const { submitBatch } = jobSubmitters(
      survivors.map((r) => r.httpUrl),
      token,
    );

    const killedAt = epochMs();
    const killedAtUs = Number(process.hrtime.bigint() / 1000n);
    process.kill(victim.pid, 'SIGKILL');
    // One job per node, meant for it alone: its assignment says the node is dispatchable again.
    const jobOf = new Map<string, string>();
    for (let from = 0; from < hostnames.length; from += BATCH) {
      const batch = hostnames.slice(from, from + BATCH);
      const submitted = await submitBatch(batch.length, (i) => ({
        job: { name: 'failover-probe', command: ['true'] },
        selector: { tags: { [NODE_TAG]: batch[i]! } },
        max_attempts: 1,
      }));
      submitted.forEach((s, i) => jobOf.set(batch[i]!, s.jobId));
    }
    const submittedMs = epochMs() - killedAt;
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), FAILOVER_WAIT_MS).unref());
    const outcome = await Promise.race([Promise.all([everyoneBack, ...[...jobOf.values()].map((j) => stamps.done(j))]), timeout]);

    const back = hostnames.map((h) => backAt.get(h)).filter((s): s is ResumeStamp => s !== undefined);
    const registeredMs = back.map((s) => s[1] - killedAt);
    const assignedMs = hostnames
      .map((h) => stamps.byJob.get(jobOf.get(h)!)?.assignedAt)
      .filter((t): t is number => t !== undefined)
      .map((t) => t - killedAt);
    console.log(`  kill -9 of r0 at t = 0; ${hostnames.length} jobs (one per node) submitted to r1 and r2 by ${sec(submittedMs)}`);
    console.log(`  kill → RegisterAck of the resumed session on r1/r2: ${spread(summarize(registeredMs), hostnames.length)}`);
    console.log(`  kill → the node's job assigned (dispatchable):     ${spread(summarize(assignedMs), hostnames.length)}`);
    console.log(`  RegisterAcks by second after the kill: ${perSecond(registeredMs)}`);
    if (planeNodeArgs().length > 0) console.log(`  kill at CLOCK_MONOTONIC ${killedAtUs} µs (for profile-summary.ts --from-us)`);
    const tries = summarize(back.map((s) => s[2]));
    console.log(`  connections tried per node: p50 ${tries.p50}, max ${tries.max}; resumptions given up: ${resumeFailures.length}`);
    if (resumeFailures.length > 0) console.log(`  first given up: ${resumeFailures[0]}`);
    if (outcome === 'timeout') console.log(`  (stopped waiting after ${FAILOVER_WAIT_MS / 1000} s)`);
    errors.print();
    for (const [i, r] of survivors.entries()) console.log(`  r${i + 1}: ${await leaseHealth(r)}`);
    const total = Math.max(...registeredMs, ...assignedMs);
    const complete = back.length === hostnames.length && assignedMs.length === hostnames.length;
    console.log(
      `  total: every node registered again and dispatchable ${complete ? `at ${sec(total)}` : 'NOT reached'}; ` +
        `aim within 10 s ${complete && total <= 10_000 ? 'met' : 'NOT met'}\n`,
    );
  } finally {
    await stopWorkers(workers);
    await stopCluster(cluster);
  }
}

/** How many of the times (ms) fall in each whole second, from the first non-empty one: "8 s: 12, 9 s: 840, ...". */
function perSecond(ms: number[]): string {
  const counts = new Map<number, number>();
  for (const t of ms) counts.set(Math.floor(t / 1000), (counts.get(Math.floor(t / 1000)) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => a - b).map(([second, n]) => `${second} s: ${n}`).join(', ');
}

// ---- at rest ----------------------------------------------------------------------------------

async function atRest(secret: Secret, run: number): Promise<void> {
  console.log(`== at rest, run ${run}: ${REST_NODES} heartbeating nodes over 3 replicas (default settings), nothing changing`);
  const cluster = await startCluster(secret, 3, {});
  let workers: Worker[] = [];
  try {
    const started = performance.now();
    workers = startFleetWorkers({
      tcpUrls: cluster.replicas.map((r) => r.tcpUrl.href),
      dataDir: secret.dir,
      nodes: REST_NODES,
      workers: 3,
      batch: 300,
      probeEvery: Number.MAX_SAFE_INTEGER, // no lag probes: nothing but heartbeats
    });
    await Promise.all(workers.map((w) => w.next('ready')));
    for (const w of workers) w.tell({ type: 'start' });
    const ramps = await Promise.all(workers.map((w) => w.next('registered')));
    const registered = ramps.reduce((n, r) => n + r.registered, 0);
    console.log(
      `  ${registered} nodes registered in ${((performance.now() - started) / 1000).toFixed(1)} s` +
        `${ramps.some((r) => r.failed > 0) ? `, ${ramps.reduce((n, r) => n + r.failed, 0)} failed: ${ramps.find((r) => r.firstError)?.firstError}` : ''}`,
    );
    // The window opens once every node is claimed (its ownership entry written): from then on
    // nothing changes hands, and the nodes are spread evenly, so no rebalancing round moves one.
    await allClaimed(cluster, registered);
    const window = await varzWindow(cluster, REST_S * 1000);
    const pids = cluster.replicas.map((r) => r.pid);
    console.log(
      `  nats-server over ${window.seconds.toFixed(1)} s: ${window.inPerS.toFixed(1)} msgs/s in, ${window.outPerS.toFixed(1)} msgs/s out ` +
        `(${window.inBytesPerS.toFixed(0)} / ${window.outBytesPerS.toFixed(0)} bytes/s); replicas' CPU ${window.replicaCpuPercent.toFixed(0)}% of a core together ` +
        `(${pids.length} processes, nodes heartbeating every 5 s), nats-server ${window.natsCpuPercent.toFixed(1)}%`,
    );
    const renewals = (3 * 1000) / DEFAULTS.leaseRenewMs;
    const polls = (3 * 1000) / DEFAULTS.revocationPollMs;
    console.log(
      `  expected at rest: lease renewals 3 replicas / ${DEFAULTS.leaseRenewMs / 1000} s = ${renewals}/s, ` +
        `revocation polls 3 / ${DEFAULTS.revocationPollMs / 1000} s = ${polls}/s, each a request and its reply`,
    );
    const tapped = await tapWindow(cluster, REST_S * 1000);
    console.log(`  the same window again, with a tap on '>' (the tap's own deliveries are out msgs too): ${tapped.total} messages, by subject:`);
    for (const [subject, count] of tapped.bySubject.slice(0, 16)) console.log(`    ${(count / tapped.seconds).toFixed(2).padStart(8)}/s  ${subject}`);
    // An owner entry read or written is `$KV.muster-owners.<node>` or a get on its stream; a stream info is a watch's health check.
    const ownerOps = tapped.bySubject.filter(([s]) => s.startsWith('$KV.muster-owners') || /GET\.KV_muster-owners/.test(s)).reduce((n, [, c]) => n + c, 0);
    console.log(`  ownership at rest: ${ownerOps} owner entries read or written in the window (any ${REST_NODES} nodes')\n`);
    for (const w of workers) w.tell({ type: 'stop' });
  } finally {
    await Promise.all(workers.map((w) => stop(w.child, 5_000)));
    await stopCluster(cluster);
  }
}

interface VarzWindow {
  seconds: number;
  inPerS: number;
  outPerS: number;
  inBytesPerS: number;
  outBytesPerS: number;
  replicaCpuPercent: number;
  natsCpuPercent: number;
}

interface Varz {
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
}

async function varz(cluster: Cluster): Promise<Varz> {
  const response = await fetch(`${cluster.monitorUrl}/varz`);
  if (!response.ok) throw new Error(`GET /varz: ${response.status}`);
  return (await response.json()) as Varz;
}

async function varzWindow(cluster: Cluster, ms: number): Promise<VarzWindow> {
  const pids = cluster.replicas.map((r) => r.pid);
  const cpu0 = pids.reduce((n, p) => n + cpuSeconds(p), 0);
  const nats0 = cpuSeconds(cluster.nats.pid);
  const v0 = await varz(cluster);
  const t0 = performance.now();
  await sleep(ms);
  const v1 = await varz(cluster);
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds,
    inPerS: (v1.in_msgs - v0.in_msgs) / seconds,
    outPerS: (v1.out_msgs - v0.out_msgs) / seconds,
    inBytesPerS: (v1.in_bytes - v0.in_bytes) / seconds,
    outBytesPerS: (v1.out_bytes - v0.out_bytes) / seconds,
    replicaCpuPercent: (100 * (pids.reduce((n, p) => n + cpuSeconds(p), 0) - cpu0)) / seconds,
    natsCpuPercent: (100 * (cpuSeconds(cluster.nats.pid) - nats0)) / seconds,
  };
}

/** Every message on the server for `ms`, counted by subject (reply inboxes and per-key subjects folded). */
async function tapWindow(cluster: Cluster, ms: number): Promise<TapCounts> {
  const tap = await startTap(cluster);
  await sleep(ms);
  return tap.stop();
}

interface TapCounts {
  total: number;
  seconds: number;
  bySubject: [string, number][];
}

/** A subscription to `>` counting by subject until stopped. */
async function startTap(cluster: Cluster): Promise<{ stop(): Promise<TapCounts> }> {
  const nc = await connect({ servers: cluster.nats.url });
  const counts = new Map<string, number>();
  let total = 0;
  const sub = nc.subscribe('>');
  const done = (async () => {
    for await (const m of sub) {
      total++;
      const key = foldSubject(m.subject);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  })();
  await nc.flush();
  const t0 = performance.now();
  return {
    async stop(): Promise<TapCounts> {
      await nc.flush();
      sub.unsubscribe();
      await done;
      const seconds = (performance.now() - t0) / 1000;
      await nc.close();
      return { total, seconds, bySubject: [...counts].sort((a, b) => b[1] - a[1]) };
    },
  };
}

/** Reply inboxes, KV keys and ack subjects folded (`_INBOX.*`, `$KV.bucket.*`); API subjects keep their stream. */
function foldSubject(subject: string): string {
  const parts = subject.split('.');
  if (parts[0] === '_INBOX') return '_INBOX.*';
  if (parts[0] === '$KV' && parts.length > 2) return `$KV.${parts[1]}.*`;
  if (parts[0] === '$JS' && parts[1] === 'ACK' && parts.length > 3) return `$JS.ACK.${parts[2]}.*`;
  const keep = parts[0] === '$JS' && parts[1] === 'EVENT' ? 6 : parts[0] === '$JS' && parts[1] === 'API' ? 5 : 4;
  return parts.length > keep ? `${parts.slice(0, keep).join('.')}.*` : subject;
}

// ---- processes --------------------------------------------------------------------------------

export function makeSecret(): Secret {
  const dir = mkdtempSync(join(tmpdir(), 'muster-cluster-bench-'));
  const text = randomBytes(32).toString('base64url');
  // The same text as MUSTER_JWT_SECRET and as `<dir>/secret`: the same key (tokens/secret.ts).
  writeFileSync(join(dir, 'secret'), `${text}\n`, { mode: 0o600 });
  return { dir, text };
}

/** Where each plane's warnings go (BENCH_CLUSTER_LOG_DIR, default a temporary directory kept after the run). */
let logDir: string | undefined;
let planesStarted = 0;

function planeLogDir(): string {
  return (logDir ??= process.env.BENCH_CLUSTER_LOG_DIR ?? mkdtempSync(join(tmpdir(), 'muster-cluster-bench-logs-')));
}

function planeOptions(args: string[] = []): Parameters<typeof startPlane>[1] {
  const logFile = join(planeLogDir(), `plane-${++planesStarted}${args.length > 0 ? `-${args.at(-1)}` : ''}.log`);
  return { logLevel: process.env.BENCH_CLUSTER_LOG_LEVEL ?? 'warn', fdLimit: 65_536, stopTimeoutMs: 30_000, args, logFile };
}

async function startCluster(secret: Secret, replicas: number, env: Record<string, string>): Promise<Cluster> {
  const monitorPort = await freePort();
  const nats = await NatsServer.start({ args: ['-m', String(monitorPort)] });
  const started: RunningPlane[] = [];
  try {
    for (let i = 0; i < replicas; i++) {
      started.push(
        await startPlane(
          { ...env, MUSTER_JWT_SECRET: secret.text, MUSTER_NATS_URL: nats.url },
          planeOptions(['--control-plane-id', `r${i}`]),
        ),
      );
    }
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    await nats.stop();
    throw err;
  }
  return { nats, monitorUrl: `http://127.0.0.1:${monitorPort}`, replicas: started };
}

async function stopCluster(cluster: Cluster): Promise<void> {
  await Promise.all(cluster.replicas.map((r) => r.stop()));
  await cluster.nats.stop();
}

async function stopWorkers(workers: ChildProcess[]): Promise<void> {
  for (const w of workers) if (w.connected) w.send({ type: 'stop' });
  await Promise.all(workers.map((w) => stop(w, 5_000)));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * What a survivor's lease went through during the takeover, from its `/metrics`: the longest
 * event-loop stall since start (a renewal timer fires no earlier than the loop lets it) and the
 * slowest renewal round trip (histogram bucket), the margins a shorter lease TTL would eat into.
 */
async function leaseHealth(replica: RunningPlane): Promise<string> {
  const text = await (await fetch(`${replica.httpUrl}/metrics`)).text();
  const value = (name: string): number | undefined => {
    const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const buckets = [...text.matchAll(/^muster_cluster_lease_renewal_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)].map((m) => ({ le: m[1]!, n: Number(m[2]) }));
  const count = value('muster_cluster_lease_renewal_seconds_count') ?? 0;
  const slowest = buckets.find((b) => b.n >= count)?.le ?? '?';
  const lag = value('nodejs_eventloop_lag_max_seconds');
  return `event loop stalled at most ${lag === undefined ? '?' : `${lag.toFixed(2)} s`}; ${count} lease renewals, the slowest within ${slowest} s`;
}

function spread(s: Summary, of: number): string {
  if (s.count === 0) return 'none';
  return `median ${sec(s.p50)}, p99 ${sec(s.p99)}, max ${sec(s.max)} (${s.count} of ${of} nodes)`;
}

function sec(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/** Resolves once `count` nodes have an ownership entry, heard from a watch of the bucket; fails after 60 s. */
async function allClaimed(cluster: Cluster, count: number): Promise<void> {
  const nc = await connect({ servers: cluster.nats.url });
  try {
    const kv = await new Kvm(nc).open(OWNERS_BUCKET);
    const watch = await kv.watch();
    const claimed = new Set<string>();
    const timer = setTimeout(() => watch.stop(), 60_000);
    for await (const entry of watch) {
      if (entry.operation === 'PUT') claimed.add(entry.key);
      else claimed.delete(entry.key);
      if (claimed.size >= count) break;
    }
    clearTimeout(timer);
    watch.stop();
    if (claimed.size < count) throw new Error(`only ${claimed.size} of ${count} nodes claimed within 60 s`);
  } finally {
    await nc.close();
  }
}

/** A measurement window of `ms` of wall time (what the rates are divided by), not a wait for something. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
