// `npm run bench -- dispatch`: job throughput through one control plane (its own process).
// Simulated nodes in worker processes (dispatch-worker.ts) accept and finish every job at once;
// jobs are submitted over the admin API. Prints:
//   - light load: jobs submitted one at a time (single POST), each after the last one's result
//     was acknowledged: submit → assignment p50/p99;
//   - backlog, batches: BENCH_DISPATCH_JOBS submitted as `POST /v1/jobs {jobs: [...]}` of
//     BENCH_DISPATCH_BATCH jobs, BENCH_DISPATCH_BATCHES_IN_FLIGHT requests at once: jobs/s from
//     the first submit to the last result acknowledged, submit → assignment p50/p99 (queueing
//     included), the plane's CPU and the share of its busy time in the job store;
//   - backlog, single POSTs (the baseline, same run): BENCH_DISPATCH_SINGLE_JOBS submitted one
//     per request, BENCH_DISPATCH_CONCURRENCY in flight, the same figures;
//   - the share of the plane's busy CPU time inside the job store (supervisor/store/ and the
//     SQLite calls it makes) and in token verification, from a CPU profile of the plane taken
//     meanwhile (BENCH_DISPATCH_PROFILE=0: none).
//
//   BENCH_DISPATCH_NODES              simulated nodes (default 1000), each one job at a time
//   BENCH_DISPATCH_WORKERS            node worker processes (default 4)
//   BENCH_DISPATCH_JOBS               jobs in the batch backlog phase (default 20000)
//   BENCH_DISPATCH_BATCH              jobs per batch request (default 500, at most 1000)
//   BENCH_DISPATCH_BATCHES_IN_FLIGHT  batch requests in flight (default 4)
//   BENCH_DISPATCH_SINGLE_JOBS        jobs in the single-POST backlog phase (default 3000; 0: skip it)
//   BENCH_DISPATCH_CONCURRENCY        single POST requests in flight (default 64)
//   BENCH_DISPATCH_LIGHT              jobs in the light-load phase (default 200)
//   BENCH_DISPATCH_KEEP_PROFILE       1: keep the plane's CPU profile (its path is printed) for profile-summary.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintApiToken } from './bench-node.js';
import type { DispatchCommand, DispatchReport, DispatchWorkerConfig, JobStamp } from './dispatch-worker.js';
import { CpuWindow, cpuSeconds, machineCpuSeconds } from './proc-stats.js';
import { planeNodeArgs, startPlane, stop, withFdLimit } from './processes.js';
import { stackShare } from './profile-share.js';
import { summarize, type Summary } from './quantiles.js';

const NODES = intFromEnv('BENCH_DISPATCH_NODES', 1_000);
const WORKERS = Math.max(1, Math.min(intFromEnv('BENCH_DISPATCH_WORKERS', 4), NODES));
const JOBS = intFromEnv('BENCH_DISPATCH_JOBS', 20_000);
const BATCH = Math.max(1, Math.min(intFromEnv('BENCH_DISPATCH_BATCH', 500), 1_000));
const BATCHES_IN_FLIGHT = Math.max(1, intFromEnv('BENCH_DISPATCH_BATCHES_IN_FLIGHT', 4));
const SINGLE_JOBS = intFromEnv('BENCH_DISPATCH_SINGLE_JOBS', 3_000);
const LIGHT = intFromEnv('BENCH_DISPATCH_LIGHT', 200);
const CONCURRENCY = Math.max(1, intFromEnv('BENCH_DISPATCH_CONCURRENCY', 64));
const PROFILE = process.env.BENCH_DISPATCH_PROFILE !== '0';
const KEEP_PROFILE = process.env.BENCH_DISPATCH_KEEP_PROFILE === '1';

const workerPath = fileURLToPath(new URL('./dispatch-worker.ts', import.meta.url));
const storeDir = fileURLToPath(new URL('../../supervisor/store/', import.meta.url));
const tokensDir = fileURLToPath(new URL('../../supervisor/tokens/', import.meta.url));

export const JOB = { job: { name: 'noop', command: ['true'] }, max_attempts: 1 };
const JOB_BODY = JSON.stringify(JOB);

/** What the workers reported of each job, and who waits for which job. */
export class Stamps {
  readonly byJob = new Map<string, { assignedAt: number; ackedAt: number }>();
  private readonly waiting = new Map<string, () => void>();

  add(stamps: JobStamp[]): void {
    for (const [jobId, assignedAt, ackedAt] of stamps) {
      this.byJob.set(jobId, { assignedAt, ackedAt });
      this.waiting.get(jobId)?.();
      this.waiting.delete(jobId);
    }
  }

  /** Resolves once the job's result was acknowledged. */
  done(jobId: string): Promise<void> {
    if (this.byJob.has(jobId)) return Promise.resolve();
    return new Promise((resolve) => this.waiting.set(jobId, resolve));
  }
}

export interface Submitted {
  jobId: string;
  /** Epoch ms the request carrying it was sent. */
  at: number;
}

/** One backlog phase: how the jobs are sent, and what it measured. */
export interface BacklogResult {
  label: string;
  jobs: number;
  jobsPerSecond: number;
  seconds: number;
  submitSeconds: number;
  assign: Summary;
  roundTrip: Summary;
  planeCpuPercent: number;
  /** The plane's user + system CPU time over the phase. */
  planeCpuSeconds: number;
  workersCpuPercent: number;
  othersCpuPercent: number;
  fromUs: number;
  toUs: number;
}

export async function runDispatch(): Promise<void> {
  const profileDir = mkdtempSync(join(tmpdir(), 'muster-dispatch-prof-'));
  const plane = await startPlane(
    { MUSTER_HEARTBEAT_INTERVAL_MS: '600000', MUSTER_RETRY_BACKOFF_MS: '0' },
    { logLevel: 'warn', fdLimit: 65_536, stopTimeoutMs: 60_000, nodeArgs: PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [] },
  );
  const workers: ChildProcess[] = [];
  try {
    console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; load average at start ${loadAverage()}`);
    console.log(
      `dispatch: ${NODES} nodes over ${WORKERS} worker processes (one job at a time each, accepted and finished at once), ` +
        `batches of ${BATCH} (${BATCHES_IN_FLIGHT} in flight) beside single POSTs (${CONCURRENCY} in flight), SQLite store` +
        `${PROFILE ? ', plane under --cpu-prof' : ''}\n`,
    );
    const stamps = new Stamps();
    const reports = await startWorkers({ tcpUrls: [plane.tcpUrl.href], dataDir: plane.dataDir, nodes: NODES, workers: WORKERS }, workers, stamps);
    const registered = reports.reduce((n, r) => n + r.registered, 0);
    console.log(`nodes registered: ${registered} (${reports.reduce((n, r) => n + r.failed, 0)} failed${reports.find((r) => r.firstError)?.firstError ?? ''})`);
    const token = await mintApiToken(plane.dataDir, 'operator');
    const { submitOne, submitBatch } = jobSubmitters([plane.httpUrl], token);

    // Light load: one job in the system at a time.
    const light: number[] = [];
    for (let i = 0; i < LIGHT; i++) {
      const [{ jobId, at }] = (await submitOne()) as [Submitted];
      await stamps.done(jobId);
      light.push(stamps.byJob.get(jobId)!.assignedAt - at);
    }
    console.log(`light load (${LIGHT} jobs, one at a time, single POST): submit → assignment ${line(summarize(light))}\n`);

    const results: BacklogResult[] = [];
    if (JOBS > 0) {
      results.push(await backlog(`batches of ${BATCH}, ${BATCHES_IN_FLIGHT} in flight`, JOBS, BATCH, BATCHES_IN_FLIGHT, submitBatch, [plane.pid], workers, stamps));
    }
    if (SINGLE_JOBS > 0) {
      results.push(await backlog(`single POSTs, ${CONCURRENCY} in flight (baseline)`, SINGLE_JOBS, 1, CONCURRENCY, submitOne, [plane.pid], workers, stamps));
    }
    for (const w of workers) tell(w, { type: 'stop' });
    await Promise.all(workers.map((w) => stop(w, 5_000)));
    await plane.stop();
    if (PROFILE) printProfileShares(profileDir, results);
    const [batched, single] = results;
    if (batched !== undefined && single !== undefined) {
      console.log(
        `\nsummary: ${batched.jobsPerSecond} jobs/s end to end in batches beside ${single.jobsPerSecond} jobs/s with single POSTs ` +
          `(× ${(batched.jobsPerSecond / single.jobsPerSecond).toFixed(1)}); aim 3,000 jobs/s: ${batched.jobsPerSecond >= 3_000 ? 'met' : 'NOT met'}`,
      );
    }
    console.log(`load average at the end ${loadAverage()} (other processes on the machine skew every figure)`);
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await plane.stop();
    if (!KEEP_PROFILE) rmSync(profileDir, { recursive: true, force: true });
  }
}

/**
 * Submitting over the admin API of one plane, or of each replica in turn (round robin, a request
 * at a time): a single POST, or a batch of `count` jobs (`jobOf(i)`: the batch's i-th, default JOB).
 */
export function jobSubmitters(
  httpUrls: string[],
  token: string,
): { submitOne(): Promise<Submitted[]>; submitBatch(count: number, jobOf?: (i: number) => unknown): Promise<Submitted[]> } {
  let next = 0;
  const post = async (body: string): Promise<unknown> => {
    const url = httpUrls[next++ % httpUrls.length]!;
    const response = await fetch(`${url}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
    if (response.status !== 201) throw new Error(`POST ${url}/v1/jobs: ${response.status} ${await response.text()}`);
    return response.json();
  };
  return {
    async submitOne() {
      const at = epochMs();
      return [{ jobId: ((await post(JOB_BODY)) as { job_id: string }).job_id, at }];
    },
    async submitBatch(count, jobOf = () => JOB) {
      const at = epochMs();
      const answer = (await post(JSON.stringify({ jobs: Array.from({ length: count }, (_, i) => jobOf(i)) }))) as { job_ids: string[] };
      return answer.job_ids.map((jobId) => ({ jobId, at }));
    },
  };
}

/**
 * `jobs` submitted `perRequest` at a time with `inFlight` requests at once, then every result
 * awaited; "plane" CPU is that of every process in `planePids` together (the replicas of a cluster).
 */
export async function backlog(
  label: string,
  jobs: number,
  perRequest: number,
  inFlight: number,
  submit: (count: number) => Promise<Submitted[]>,
  planePids: number[],
  workers: ChildProcess[],
  stamps: Stamps,
): Promise<BacklogResult> {
  const fromUs = monotonicUs();
  const planeCpu = new CpuWindow(planePids);
  planeCpu.start();
  const workersCpu0 = workers.reduce((n, w) => n + cpuSeconds(w.pid!), 0);
  const machine0 = machineCpuSeconds();
  const started = epochMs();
  const submitted: Submitted[] = [];
  let left = jobs;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (left > 0) {
        const count = Math.min(perRequest, left);
        left -= count;
        submitted.push(...(await submit(count)));
      }
    }),
  );
  const submitEnded = epochMs();
  await Promise.all(submitted.map((s) => stamps.done(s.jobId)));
  const ended = Math.max(...submitted.map((s) => stamps.byJob.get(s.jobId)!.ackedAt));
  const toUs = monotonicUs();
  const cpu = planeCpu.percent();
  const workersCpu = workers.reduce((n, w) => n + cpuSeconds(w.pid!), 0) - workersCpu0;
  const machineBusy = machineCpuSeconds().busy - machine0.busy;
  const seconds = (ended - started) / 1000;
  const result: BacklogResult = {
    label,
    jobs,
    jobsPerSecond: Math.round(jobs / seconds),
    seconds,
    submitSeconds: (submitEnded - started) / 1000,
    assign: summarize(submitted.map((s) => stamps.byJob.get(s.jobId)!.assignedAt - s.at)),
    roundTrip: summarize(submitted.map((s) => stamps.byJob.get(s.jobId)!.ackedAt - s.at)),
    planeCpuPercent: cpu.percent,
    planeCpuSeconds: cpu.cpuSeconds,
    workersCpuPercent: (100 * workersCpu) / cpu.seconds,
    othersCpuPercent: Math.max(0, (100 * (machineBusy - workersCpu - cpu.cpuSeconds)) / cpu.seconds),
    fromUs,
    toUs,
  };
  console.log(
    `backlog, ${label}: ${result.jobsPerSecond} jobs/s from the first submit to the last result acknowledged ` +
      `(${jobs} jobs in ${seconds.toFixed(1)} s; submitting took ${result.submitSeconds.toFixed(1)} s, ${Math.round(jobs / result.submitSeconds)} submitted/s)`,
  );
  console.log(`  submit → assignment ${line(result.assign)}`);
  console.log(`  submit → result acknowledged ${line(result.roundTrip)}`);
  console.log(
    `  CPU, in % of one core: plane ${cpu.percent.toFixed(0)}%, node workers ${result.workersCpuPercent.toFixed(0)}%, ` +
      `this client and every other process on the machine ${result.othersCpuPercent.toFixed(0)}% (of ${cpus().length * 100}%); load average now ${loadAverage()}`,
  );
  // What a core to itself would allow, from the plane's own CPU time (user + system) per job.
  const perJobUs = (cpu.cpuSeconds * 1e6) / jobs;
  console.log(`  plane CPU per job ${perJobUs.toFixed(0)} µs: at most ${Math.round(1e6 / perJobUs)} jobs/s on one whole core`);
  // For a profile of the plane taken from outside (perf with -k CLOCK_MONOTONIC, BENCH_PLANE_NODE_ARGS=--perf-basic-prof).
  if (planeNodeArgs().length > 0) console.log(`  window (CLOCK_MONOTONIC µs) --from-us ${fromUs} --to-us ${toUs}`);
  return result;
}

/** Where the node workers connect, and how many nodes they hold. */
export interface NodeWorkersOptions {
  /** Node listeners; worker i registers its nodes on the (i mod length)-th. */
  tcpUrls: string[];
  /** Where the workers read the token secret (`<dataDir>/secret`). */
  dataDir: string;
  nodes: number;
  workers: number;
  /** Every replica's node listener: a node whose connection drops resumes on another (see dispatch-worker.ts). */
  failoverUrls?: string[];
  /** Called with each worker's reports other than `ready` and `stamps`. */
  onReport?: (report: DispatchReport) => void;
}

/** Starts the node workers (into `workers`), and resolves with their `ready` reports. */
export function startWorkers(o: NodeWorkersOptions, workers: ChildProcess[], stamps: Stamps): Promise<Extract<DispatchReport, { type: 'ready' }>[]> {
  const ready: Promise<Extract<DispatchReport, { type: 'ready' }>>[] = [];
  for (let index = 0; index < o.workers; index++) {
    const config: DispatchWorkerConfig = {
      index,
      nodes: Math.floor(o.nodes / o.workers) + (index < o.nodes % o.workers ? 1 : 0),
      batch: 50,
      tcpUrl: o.tcpUrls[index % o.tcpUrls.length]!,
      dataDir: o.dataDir,
      ...(o.failoverUrls === undefined ? {} : { failoverUrls: o.failoverUrls }),
    };
    const [command, args] = withFdLimit(65_536, process.execPath, ['--import', 'tsx', workerPath, JSON.stringify(config)]);
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`dispatch worker exited (${code}) before it was ready`)));
        child.on('message', (report: DispatchReport) => {
          if (report.type === 'ready') resolve(report);
          else if (report.type === 'stamps') stamps.add(report.stamps);
          else o.onReport?.(report);
        });
      }),
    );
  }
  return Promise.all(ready);
}

/** The plane's profile is written as it exits: each backlog phase's share in the store and in token checks. */
function printProfileShares(dir: string, results: BacklogResult[]): void {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) {
    console.log('\nstore share: no CPU profile was written');
    return;
  }
  const path = join(dir, file);
  console.log(`\nthe plane's CPU profile (wall-clock samples: they include time the plane waited for a core)${KEEP_PROFILE ? `: ${path}` : ''}`);
  for (const r of results) {
    const store = stackShare(path, (f) => f.startsWith(storeDir), r.fromUs, r.toUs);
    const tokens = stackShare(path, (f) => f.startsWith(tokensDir), r.fromUs, r.toUs);
    console.log(
      `  backlog, ${r.label}: ${(store.busyMs / 1000).toFixed(1)} s non-idle, ${pct(store)} inside the job store ` +
        `(supervisor/store/ and the SQLite calls under it, inclusive), ${pct(tokens)} in token verification (supervisor/tokens/)` +
        (KEEP_PROFILE ? `; window --from-us ${r.fromUs} --to-us ${r.toUs}` : ''),
    );
  }
}

function pct(share: { busyMs: number; insideMs: number }): string {
  return `${((100 * share.insideMs) / Math.max(1, share.busyMs)).toFixed(1)}%`;
}

export function loadAverage(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' ');
}

function tell(child: ChildProcess, command: DispatchCommand): void {
  if (child.connected) child.send(command);
}

export function line(s: Summary): string {
  return `p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(1)} ms (${s.count} jobs)`;
}

export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return n;
}
