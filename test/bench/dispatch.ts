// `npm run bench -- dispatch`: job throughput through one control plane (its own process).
// Simulated nodes in worker processes (dispatch-worker.ts) accept and finish every job at once;
// jobs are submitted over the admin API. Prints:
//   - light load: jobs submitted one at a time, each after the last one's result was acknowledged:
//     submit → assignment p50/p99;
//   - backlog: BENCH_DISPATCH_JOBS submitted as fast as BENCH_DISPATCH_CONCURRENCY requests in
//     flight allow: jobs/s from the first submit to the last result acknowledged, and submit →
//     assignment p50/p99 (queueing included);
//   - the share of the plane's busy CPU time inside the job store (supervisor/store/ and the
//     SQLite calls it makes), from a CPU profile of the plane taken meanwhile (BENCH_DISPATCH_PROFILE=0: none).
// Submissions are single `POST /v1/jobs` requests: batch submit (`{jobs: [...]}`) is not in this branch yet.
//
//   BENCH_DISPATCH_NODES        simulated nodes (default 1000), each one job at a time
//   BENCH_DISPATCH_WORKERS      node worker processes (default 4)
//   BENCH_DISPATCH_JOBS         jobs in the backlog phase (default 20000)
//   BENCH_DISPATCH_LIGHT        jobs in the light-load phase (default 200)
//   BENCH_DISPATCH_CONCURRENCY  submit requests in flight (default 64)
//   BENCH_DISPATCH_KEEP_PROFILE 1: keep the plane's CPU profile (its path is printed) for profile-summary.ts
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, hostname, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintApiToken } from './bench-node.js';
import type { DispatchCommand, DispatchReport, DispatchWorkerConfig, JobStamp } from './dispatch-worker.js';
import { CpuWindow, cpuSeconds, machineCpuSeconds } from './proc-stats.js';
import { startPlane, stop, withFdLimit, type RunningPlane } from './processes.js';
import { stackShare } from './profile-share.js';
import { summarize, type Summary } from './quantiles.js';

const NODES = intFromEnv('BENCH_DISPATCH_NODES', 1_000);
const WORKERS = Math.max(1, Math.min(intFromEnv('BENCH_DISPATCH_WORKERS', 4), NODES));
const JOBS = intFromEnv('BENCH_DISPATCH_JOBS', 20_000);
const LIGHT = intFromEnv('BENCH_DISPATCH_LIGHT', 200);
const CONCURRENCY = Math.max(1, intFromEnv('BENCH_DISPATCH_CONCURRENCY', 64));
const PROFILE = process.env.BENCH_DISPATCH_PROFILE !== '0';
const KEEP_PROFILE = process.env.BENCH_DISPATCH_KEEP_PROFILE === '1';

const workerPath = fileURLToPath(new URL('./dispatch-worker.ts', import.meta.url));
const storeDir = fileURLToPath(new URL('../../supervisor/store/', import.meta.url));

const JOB_BODY = JSON.stringify({ job: { name: 'noop', command: ['true'] }, max_attempts: 1 });

/** What the workers reported of each job, and who waits for which job. */
class Stamps {
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

export async function runDispatch(): Promise<void> {
  const profileDir = mkdtempSync(join(tmpdir(), 'muster-dispatch-prof-'));
  const plane = await startPlane(
    { MUSTER_HEARTBEAT_INTERVAL_MS: '600000', MUSTER_RETRY_BACKOFF_MS: '0' },
    { logLevel: 'warn', fdLimit: 65_536, stopTimeoutMs: 60_000, nodeArgs: PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [] },
  );
  const workers: ChildProcess[] = [];
  try {
    console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    console.log(
      `dispatch: ${NODES} nodes over ${WORKERS} worker processes (one job at a time each, accepted and finished at once), ` +
        `single POST /v1/jobs submissions (${CONCURRENCY} in flight in the backlog phase), SQLite store${PROFILE ? ', plane under --cpu-prof' : ''}\n`,
    );
    const stamps = new Stamps();
    const ready = startWorkers(plane, workers, stamps);
    const reports = await ready;
    const registered = reports.reduce((n, r) => n + r.registered, 0);
    console.log(`nodes registered: ${registered} (${reports.reduce((n, r) => n + r.failed, 0)} failed${reports.find((r) => r.firstError)?.firstError ?? ''})`);
    const token = await mintApiToken(plane.dataDir, 'operator');
    const submit = async (): Promise<{ jobId: string; at: number }> => {
      const at = epochMs();
      const response = await fetch(`${plane.httpUrl}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JOB_BODY,
      });
      if (response.status !== 201) throw new Error(`POST /v1/jobs: ${response.status} ${await response.text()}`);
      return { jobId: ((await response.json()) as { job_id: string }).job_id, at };
    };

    // Light load: one job in the system at a time.
    const light: number[] = [];
    for (let i = 0; i < LIGHT; i++) {
      const { jobId, at } = await submit();
      await stamps.done(jobId);
      light.push(stamps.byJob.get(jobId)!.assignedAt - at);
    }
    console.log(`light load (${LIGHT} jobs, one at a time): submit → assignment ${line(summarize(light))}`);

    // Backlog: as fast as the API takes them.
    const fromUs = monotonicUs();
    const planeCpu = new CpuWindow(plane.pid);
    planeCpu.start();
    const workersCpu0 = workers.reduce((n, w) => n + cpuSeconds(w.pid!), 0);
    const machine0 = machineCpuSeconds();
    const started = epochMs();
    const submitted: { jobId: string; at: number }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < JOBS) {
          next++;
          submitted.push(await submit());
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
    const assign = submitted.map((s) => stamps.byJob.get(s.jobId)!.assignedAt - s.at);
    const roundTrip = submitted.map((s) => stamps.byJob.get(s.jobId)!.ackedAt - s.at);
    console.log(
      `backlog (${JOBS} jobs): ${Math.round(JOBS / seconds)} jobs/s from the first submit to the last result acknowledged ` +
        `(${seconds.toFixed(1)} s; submitting took ${((submitEnded - started) / 1000).toFixed(1)} s, ${Math.round((JOBS * 1000) / (submitEnded - started))} submits/s)`,
    );
    console.log(`  submit → assignment ${line(summarize(assign))}`);
    console.log(`  submit → result acknowledged ${line(summarize(roundTrip))}`);
    console.log(
      `  CPU during the backlog, in % of one core: plane ${cpu.percent.toFixed(0)}%, node workers ${((100 * workersCpu) / cpu.seconds).toFixed(0)}%, ` +
        `this client and every other process on the machine ${Math.max(0, (100 * (machineBusy - workersCpu - cpu.cpuSeconds)) / cpu.seconds).toFixed(0)}% (of ${cpus().length * 100}%)`,
    );
    console.log(`  load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')} (other processes on the machine skew every figure)`);
    for (const w of workers) tell(w, { type: 'stop' });
    await Promise.all(workers.map((w) => stop(w, 5_000)));
    await plane.stop();
    if (PROFILE) printStoreShare(profileDir, fromUs, toUs);
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await plane.stop();
    if (!KEEP_PROFILE) rmSync(profileDir, { recursive: true, force: true });
  }
}

function startWorkers(plane: RunningPlane, workers: ChildProcess[], stamps: Stamps): Promise<Extract<DispatchReport, { type: 'ready' }>[]> {
  const ready: Promise<Extract<DispatchReport, { type: 'ready' }>>[] = [];
  for (let index = 0; index < WORKERS; index++) {
    const config: DispatchWorkerConfig = {
      index,
      nodes: Math.floor(NODES / WORKERS) + (index < NODES % WORKERS ? 1 : 0),
      batch: 50,
      tcpUrl: plane.tcpUrl.href,
      dataDir: plane.dataDir,
    };
    const [command, args] = withFdLimit(65_536, process.execPath, ['--import', 'tsx', workerPath, JSON.stringify(config)]);
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`dispatch worker exited (${code}) before it was ready`)));
        child.on('message', (report: DispatchReport) => {
          if (report.type === 'ready') resolve(report);
          else stamps.add(report.stamps);
        });
      }),
    );
  }
  return Promise.all(ready);
}

/** The plane's profile is written as it exits: the backlog phase's share inside the store. */
function printStoreShare(dir: string, fromUs: number, toUs: number): void {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) {
    console.log('  store share: no CPU profile was written');
    return;
  }
  const share = stackShare(join(dir, file), (f) => f.startsWith(storeDir), fromUs, toUs);
  if (KEEP_PROFILE) console.log(`  profile: ${join(dir, file)} (backlog window: --from-us ${fromUs} --to-us ${toUs})`);
  console.log(
    `  the plane's profile over the backlog: ${(share.busyMs / 1000).toFixed(1)} s of non-idle samples (wall clock: includes time the plane waited ` +
      `for a core), ${((100 * share.insideMs) / share.busyMs).toFixed(1)}% of them inside the job store (supervisor/store/ and the SQLite calls under it, inclusive)`,
  );
}

function tell(child: ChildProcess, command: DispatchCommand): void {
  if (child.connected) child.send(command);
}

function line(s: Summary): string {
  return `p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, max ${s.max.toFixed(1)} ms (${s.count} jobs)`;
}

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return n;
}
