// `npm run bench -- fleet`: one control plane (its own process) holding a fleet of registered,
// heartbeating nodes, opened from several worker processes (fleet-worker.ts). Prints the
// plane's resident memory per connected node, its heartbeat processing lag and its CPU use.
//
//   BENCH_FLEET_NODES         connections (default 10000)
//   BENCH_FLEET_HOLD_S        seconds they are held after all registered (default 60)
//   BENCH_FLEET_WORKERS       client processes (default 4)
//   BENCH_FLEET_BATCH         connections opened at once across the fleet (default 500)
//   BENCH_FLEET_HEARTBEAT_MS  the plane's heartbeat_interval_ms (default 5000)
//   BENCH_FLEET_PROBE_EVERY   every Nth heartbeat of a node is a lag probe (default 10)
//   BENCH_FLEET_LOG_LEVEL     the plane's --log-level (default warn)
//   BENCH_FLEET_RESUME        1 (default): after the hold, every connection drops and every node
//                             resumes at once with its session token on the same plane (a network
//                             blip: the plane also ends every old session); then the plane is killed
//                             (kill -9) and started again on its store and port, and every node resumes
//                             at once on the new process (a failover: nothing to end, all to take up); 0: skip
//   BENCH_FLEET_RESTART       1 (default): the restart and its storm after the first; 0: skip them (a
//                             profile of the first plane is written only if it is not killed)
//   BENCH_PLANE_NODE_ARGS     Node flags for the plane, e.g. --cpu-prof --cpu-prof-dir=DIR, or
//                             --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR (a snapshot is
//                             then taken at the end of the hold, after the figures are read)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, hostname, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { mintApiToken } from './bench-node.js';
import type { HoldReport, RampReport, ResumeReport, WorkerCommand, WorkerConfig, WorkerReport } from './fleet-worker.js';
import { CpuWindow, cpuSeconds, machineCpuSeconds, openFilesLimit, statusKiB } from './proc-stats.js';
import { planeNodeArgs, startPlane, stop, withFdLimit, type RunningPlane } from './processes.js';
import { summarize, type Summary } from './quantiles.js';

const NODES = intFromEnv('BENCH_FLEET_NODES', 10_000);
const HOLD_S = intFromEnv('BENCH_FLEET_HOLD_S', 60);
const WORKERS = Math.max(1, Math.min(intFromEnv('BENCH_FLEET_WORKERS', 4), NODES));
const BATCH = intFromEnv('BENCH_FLEET_BATCH', 500);
const HEARTBEAT_MS = intFromEnv('BENCH_FLEET_HEARTBEAT_MS', 5_000);
const PROBE_EVERY = Math.max(1, intFromEnv('BENCH_FLEET_PROBE_EVERY', 10));
const LOG_LEVEL = process.env.BENCH_FLEET_LOG_LEVEL ?? 'warn';
const RESUME = process.env.BENCH_FLEET_RESUME !== '0';
const RESTART = RESUME && process.env.BENCH_FLEET_RESTART !== '0';
/** Asked for; each process gets at most its hard limit. */
const FD_LIMIT = 65_536;
const RSS_SAMPLE_MS = 5_000;

const workerPath = fileURLToPath(new URL('./fleet-worker.ts', import.meta.url));

/** A worker process and its reports, in arrival order. */
export class Worker {
  private readonly waiting: { type: WorkerReport['type']; resolve: (r: WorkerReport) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    child.on('message', (report: WorkerReport) => {
      const i = this.waiting.findIndex((w) => w.type === report.type);
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(report);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  next<T extends WorkerReport['type']>(type: T): Promise<Extract<WorkerReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`fleet worker ${this.pid} exited (${code}) while we waited for '${type}'`));
      this.child.once('exit', onExit);
      this.waiting.push({
        type,
        resolve: (r) => {
          this.child.off('exit', onExit);
          resolve(r as Extract<WorkerReport, { type: T }>);
        },
      });
    });
  }

  tell(command: WorkerCommand): void {
    if (this.child.connected) this.child.send(command);
  }
}

interface Fleet {
  plane?: RunningPlane;
  workers: Worker[];
}

export async function runFleet(): Promise<void> {
  const fleet: Fleet = { workers: [] };
  let cleaning: Promise<void> | undefined;
  const cleanUp = (): Promise<void> => (cleaning ??= shutDown(fleet));
  const interrupted = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: stopping the workers and the plane`);
    void cleanUp().then(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await measure(fleet);
  } finally {
    await cleanUp();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }
}

async function measure(fleet: Fleet): Promise<void> {
  printSetup();
  const plane = await startPlane(
    { MUSTER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS) },
    { logLevel: LOG_LEVEL, fdLimit: FD_LIMIT, stopTimeoutMs: 60_000 },
  );
  fleet.plane = plane;
  fleet.workers = startWorkers(plane);
  await Promise.all(fleet.workers.map((w) => w.next('ready')));
  const planeFiles = Number(openFilesLimit(plane.pid));
  console.log(
    `open-files limit: asked ${FD_LIMIT}, hard limit here ${hardFileLimit()}; plane runs with ${planeFiles}, ` +
      `workers with ${fleet.workers.map((w) => openFilesLimit(w.pid)).join('/')}`,
  );
  if (planeFiles < NODES + 64) console.log(`warning: the plane's limit ${planeFiles} is too low for ${NODES} connections`);

  await sleep(1_000); // let the plane's start-up garbage settle before the baseline
  const baselineKiB = statusKiB(plane.pid, 'VmRSS');
  const apiToken = await mintApiToken(plane.dataDir, 'viewer');

  // Ramp: every worker opens its share, a batch at a time, each waiting for RegisterAck.
  const rampCpu = new CpuWindow(plane.pid);
  rampCpu.start();
  const rampStarted = performance.now();
  const rampFromUs = monotonicUs();
  const rampSide = new SideCpu(fleet.workers);
  for (const w of fleet.workers) w.tell({ type: 'start' });
  const ramps = await Promise.all(fleet.workers.map((w) => w.next('registered')));
  const rampMs = performance.now() - rampStarted;
  const rampToUs = monotonicUs();
  const ramp = rampCpu.percent();
  const registered = sum(ramps.map((r) => r.registered));
  printRamp(ramps, rampMs, ramp.percent, statusKiB(plane.pid, 'VmRSS'));
  console.log(`  ${perNodeCpu(ramp.cpuSeconds, registered, 'registration')}; ${rampSide.describe(ramp.cpuSeconds, rampMs)}`);
  if (registered === 0) throw new Error('no node registered');

  // Hold: everyone connected and heartbeating; memory sampled, CPU and lag measured over it.
  const statsBefore = await stats(plane, apiToken);
  for (const w of fleet.workers) w.tell({ type: 'hold' });
  const holdCpu = new CpuWindow(plane.pid);
  holdCpu.start();
  const holdFromUs = monotonicUs();
  const holdSide = new SideCpu(fleet.workers);
  const rss = await sampleRss(plane.pid, HOLD_S * 1000);
  const cpu = holdCpu.percent();
  const holdToUs = monotonicUs();
  const side = holdSide.percents(cpu.cpuSeconds, cpu.seconds * 1000);
  const statsAfter = await stats(plane, apiToken);
  const reports = await Promise.all(
    fleet.workers.map((w) => {
      const report = w.next('report');
      w.tell({ type: 'report' });
      return report;
    }),
  );
  const peakKiB = statusKiB(plane.pid, 'VmHWM');

  printHold({
    registered,
    baselineKiB,
    rss,
    peakKiB,
    cpu,
    workersCpuPercent: side.workers,
    othersCpuPercent: side.others,
    statsBefore,
    statsAfter,
    reports,
  });
  const resume = RESUME ? await resumeStorm(fleet.workers, plane, 'every connection dropped, then') : undefined;
  const restarted = RESTART ? await restartPlane(fleet, plane) : undefined;
  const failover = restarted === undefined ? undefined : await resumeStorm(fleet.workers, restarted, 'the plane killed (kill -9) and started again on its store, then');
  // For profiles of the plane (--cpu-prof, or perf with -k CLOCK_MONOTONIC): its phases on the same clock.
  if (planeNodeArgs().length > 0) {
    console.log('  windows (CLOCK_MONOTONIC µs), e.g. for profile-summary.ts:');
    console.log(`    ramp   --from-us ${rampFromUs} --to-us ${rampToUs}`);
    console.log(`    hold   --from-us ${holdFromUs} --to-us ${holdToUs}`);
    if (resume !== undefined) console.log(`    resume --from-us ${resume.fromUs} --to-us ${resume.toUs}`);
    if (failover !== undefined) console.log(`    after the restart (a new profile file) --from-us ${failover.fromUs} --to-us ${failover.toUs}`);
  }
  await heapSnapshotIfAsked(restarted ?? plane);
}

/**
 * The plane dies and comes back on its store and its port, as an embedded plane restarted by its
 * supervisor (or a replica's nodes arriving at another): its nodes' connections drop with it.
 * Resolves once the new process listens; the fleet's plane is then the new one.
 */
async function restartPlane(fleet: Fleet, plane: RunningPlane): Promise<RunningPlane> {
  process.kill(plane.pid, 'SIGKILL');
  await plane.exited;
  const started = performance.now();
  const restarted = await startPlane(
    { MUSTER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS) },
    { logLevel: LOG_LEVEL, fdLimit: FD_LIMIT, stopTimeoutMs: 60_000, dataDir: plane.dataDir, args: ['--tcp', plane.tcpUrl.host] },
  );
  fleet.plane = restarted;
  console.log(`\nplane killed (kill -9) and started again on its store and port: listening after ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return restarted;
}

/** Every node resumes at once (after `what`): how long until all are back (and its window, in profile µs). */
async function resumeStorm(workers: Worker[], plane: RunningPlane, what: string): Promise<{ fromUs: number; toUs: number }> {
  const cpu = new CpuWindow(plane.pid);
  cpu.start();
  const started = performance.now();
  const fromUs = monotonicUs();
  const side = new SideCpu(workers);
  const reports: ResumeReport[] = await Promise.all(
    workers.map((w) => {
      const report = w.next('resumed');
      w.tell({ type: 'resume' });
      return report;
    }),
  );
  const ms = performance.now() - started;
  const toUs = monotonicUs();
  const resumed = sum(reports.map((r) => r.resumed));
  console.log(
    `\nresume storm: ${what} ${resumed} nodes resumed at once with their session tokens in ${(ms / 1000).toFixed(1)} s ` +
      `(${Math.round((resumed * 1000) / ms)}/s), ${sum(reports.map((r) => r.failed))} failed; plane CPU ${cpu.percent().percent.toFixed(0)}% of a core; ` +
      `target: all within 5 s ${ms < 5_000 && resumed === NODES ? 'met' : 'NOT met'}`,
  );
  console.log(`  ${perNodeCpu(cpu.percent().cpuSeconds, resumed, 'resume')}; ${side.describe(cpu.percent().cpuSeconds, ms)}`);
  const firstError = reports.find((r) => r.firstError !== undefined)?.firstError;
  if (firstError !== undefined) console.log(`  first failure: ${firstError}`);
  return { fromUs, toUs };
}

/** The client workers' and the rest of the machine's CPU over a phase: is the plane alone on its core? */
class SideCpu {
  private readonly workers0: number;
  private readonly machine0: number;

  constructor(private readonly workers: Worker[]) {
    this.workers0 = sum(workers.map((w) => cpuSeconds(w.pid)));
    this.machine0 = machineCpuSeconds().busy;
  }

  /** Since it was made: the workers' CPU and everything else's but the plane's, each in % of one core over `ms`. */
  percents(planeCpuSeconds: number, ms: number): { workers: number; others: number } {
    const workers = sum(this.workers.map((w) => cpuSeconds(w.pid))) - this.workers0;
    const others = machineCpuSeconds().busy - this.machine0 - workers - planeCpuSeconds;
    return { workers: (100 * workers * 1000) / ms, others: (100 * others * 1000) / ms };
  }

  describe(planeCpuSeconds: number, ms: number): string {
    const { workers, others } = this.percents(planeCpuSeconds, ms);
    return `client workers ${workers.toFixed(0)}%, other processes ${Math.max(0, others).toFixed(0)}% (of ${cpus().length * 100}%)`;
  }
}

/** The plane's own CPU time (user + system) per node, and what one whole core would do at that cost. */
function perNodeCpu(cpuSeconds: number, nodes: number, what: string): string {
  const us = (cpuSeconds * 1e6) / Math.max(1, nodes);
  return `plane CPU per ${what} ${us.toFixed(0)} µs: ${NODES} in ${((us * NODES) / 1e6).toFixed(1)} s on one whole core`;
}

/** CLOCK_MONOTONIC in µs, the clock of V8's CPU profiles. */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function printSetup(): void {
  const probeRate = NODES / (HEARTBEAT_MS / 1000) / PROBE_EVERY;
  console.log(
    `machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${gib(totalmem())} GiB, Node ${process.version}; ` +
      `load average at start ${loadAverage()}`,
  );
  console.log(
    `fleet: ${NODES} nodes over ${WORKERS} worker processes, ${BATCH} opened at once, MessagePack heartbeat every ${HEARTBEAT_MS} ms ` +
      `per node (spread evenly), hold ${HOLD_S} s, plane --log-level ${LOG_LEVEL}` +
      (planeNodeArgs().length > 0 ? `, plane node args: ${planeNodeArgs().join(' ')}` : ''),
  );
  console.log(
    `lag: every ${PROBE_EVERY}th heartbeat of a node is followed in the same write by an unknown-type message with an id; ` +
      `its unknown_type Error (reply_to) comes back once the plane has handled the heartbeat: send → answer ` +
      `(~${Math.round(probeRate)} probes/s, each also an Error reply and a warn log line in the plane)\n`,
  );
}

function startWorkers(plane: RunningPlane): Worker[] {
  return startFleetWorkers({ tcpUrls: [plane.tcpUrl.href], dataDir: plane.dataDir, nodes: NODES, workers: WORKERS, batch: BATCH, probeEvery: PROBE_EVERY });
}

/** Where fleet workers connect, and how many heartbeating nodes they hold. */
export interface FleetWorkersOptions {
  /** Node listeners; worker i opens its connections to the (i mod length)-th. */
  tcpUrls: string[];
  /** Where the workers read the token secret (`<dataDir>/secret`). */
  dataDir: string;
  nodes: number;
  workers: number;
  /** Connections opened at once across the fleet. */
  batch: number;
  /** Every Nth heartbeat of a node is a lag probe. */
  probeEvery: number;
}

export function startFleetWorkers(o: FleetWorkersOptions): Worker[] {
  const workers: Worker[] = [];
  for (let index = 0; index < o.workers; index++) {
    const config: WorkerConfig = {
      index,
      workers: o.workers,
      nodes: Math.floor(o.nodes / o.workers) + (index < o.nodes % o.workers ? 1 : 0),
      fleetNodes: o.nodes,
      batch: Math.max(1, Math.round(o.batch / o.workers)),
      probeEvery: o.probeEvery,
      tcpUrl: o.tcpUrls[index % o.tcpUrls.length]!,
      dataDir: o.dataDir,
    };
    const [command, args] = withFdLimit(FD_LIMIT, process.execPath, ['--import', 'tsx', workerPath, JSON.stringify(config)]);
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    workers.push(new Worker(child));
  }
  return workers;
}

interface RssSamples {
  lastKiB: number;
  maxKiB: number;
  /** Every sample, oldest first. */
  seriesKiB: number[];
}

async function sampleRss(pid: number, ms: number): Promise<RssSamples> {
  const end = performance.now() + ms;
  const seriesKiB: number[] = [];
  for (;;) {
    seriesKiB.push(statusKiB(pid, 'VmRSS'));
    const left = end - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(RSS_SAMPLE_MS, left));
  }
  return { lastKiB: seriesKiB.at(-1)!, maxKiB: Math.max(...seriesKiB), seriesKiB };
}

interface PlaneStats {
  active_connections: number;
  nodes: number;
  total_messages_received: number;
  total_messages_sent: number;
}

async function stats(plane: RunningPlane, token: string): Promise<PlaneStats> {
  const response = await fetch(`${plane.httpUrl}/v1/stats`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`GET /v1/stats: ${response.status} ${await response.text()}`);
  return (await response.json()) as PlaneStats;
}

function printRamp(ramps: RampReport[], ms: number, cpuPercent: number, rssKiB: number): void {
  const registered = sum(ramps.map((r) => r.registered));
  const failed = sum(ramps.map((r) => r.failed));
  console.log(
    `connect + register: ${registered} nodes in ${(ms / 1000).toFixed(1)} s (${Math.round((registered * 1000) / ms)}/s), ` +
      `${failed} failed; plane CPU ${cpuPercent.toFixed(0)}% of a core, RSS ${mib(rssKiB)} MiB after`,
  );
  const firstError = ramps.find((r) => r.firstError !== undefined)?.firstError;
  if (firstError !== undefined) console.log(`  first failure: ${firstError}`);
  console.log(`  heartbeat lag during the ramp: ${lagLine(summarize(ramps.flatMap((r) => r.lags)))}`);
}

interface HoldFigures {
  registered: number;
  baselineKiB: number;
  rss: RssSamples;
  peakKiB: number;
  cpu: { percent: number; seconds: number; cpuSeconds: number };
  workersCpuPercent: number;
  /** Everything else that ran on the machine meanwhile, in % of one core. */
  othersCpuPercent: number;
  statsBefore: PlaneStats;
  statsAfter: PlaneStats;
  reports: HoldReport[];
}

function printHold(f: HoldFigures): void {
  const connected = f.statsAfter.active_connections;
  const perNode = (f.rss.lastKiB - f.baselineKiB) / Math.max(1, connected);
  const received = f.statsAfter.total_messages_received - f.statsBefore.total_messages_received;
  const heartbeats = sum(f.reports.map((r) => r.heartbeats));
  const probes = sum(f.reports.map((r) => r.probes));
  const lag = summarize(f.reports.flatMap((r) => r.lags));
  const other = mergeCounts(f.reports.map((r) => r.other));
  console.log(`\nafter holding ${f.cpu.seconds.toFixed(0)} s:`);
  console.log(
    `  GET /v1/stats: active_connections ${connected}, nodes ${f.statsAfter.nodes} (of ${f.registered} registered); ` +
      `connections closed by the plane during the hold: ${sum(f.reports.map((r) => r.closed))}`,
  );
  console.log(
    `  resident memory: ${kib(perNode)} KiB per connected node   (RSS ${mib(f.baselineKiB)} MiB before any node → ` +
      `${mib(f.rss.lastKiB)} MiB after the hold, max ${mib(f.rss.maxKiB)} MiB sampled, peak VmHWM ${mib(f.peakKiB)} MiB)`,
  );
  console.log(`  RSS every ${RSS_SAMPLE_MS / 1000} s of the hold (MiB): ${f.rss.seriesKiB.map(mib).join(' ')}`);
  console.log(`  heartbeat lag: ${lagLine(lag)}   (unanswered probes: ${sum(f.reports.map((r) => r.unanswered))})`);
  console.log(
    `  plane CPU: ${f.cpu.percent.toFixed(1)}% of one core (${f.cpu.cpuSeconds.toFixed(1)} s user+system in ${f.cpu.seconds.toFixed(1)} s); ` +
      `the ${f.reports.length} client workers together ${f.workersCpuPercent.toFixed(1)}%; ` +
      `other processes on the machine ${Math.max(0, f.othersCpuPercent).toFixed(1)}% (of ${cpus().length * 100}%; load average now ${loadAverage()})`,
  );
  console.log(
    `  traffic: ${Math.round(heartbeats / f.cpu.seconds)} heartbeats/s sent + ${Math.round(probes / f.cpu.seconds)} probes/s; ` +
      `plane received ${Math.round(received / f.cpu.seconds)} messages/s` +
      `; client lateness max ${Math.max(...f.reports.map((r) => r.lateMaxMs)).toFixed(0)} ms, ` +
      `client event-loop delay p99 ${Math.max(...f.reports.map((r) => r.loopDelayP99Ms)).toFixed(1)} ms`,
  );
  if (Object.keys(other).length > 0) console.log(`  other messages from the plane: ${JSON.stringify(other)}`);
  const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  console.log(
    `  targets: < 30 KiB per node ${verdict(perNode < 30)}; lag p99 < 100 ms ${lag.count === 0 ? 'not measured' : verdict(lag.p99 < 100)}; ` +
      `all ${NODES} connected ${verdict(connected === NODES)}`,
  );
}

/** With `--heapsnapshot-signal=SIG` among the plane's Node flags: take one now, and wait until it is written. */
async function heapSnapshotIfAsked(plane: RunningPlane): Promise<void> {
  const flag = planeNodeArgs().find((a) => a.startsWith('--heapsnapshot-signal='));
  if (flag === undefined) return;
  const signal = flag.slice(flag.indexOf('=') + 1) as NodeJS.Signals;
  const started = performance.now();
  process.kill(plane.pid, signal);
  await sleep(500);
  // The snapshot is written on the plane's main thread: the first answer comes after it.
  await fetch(`${plane.httpUrl}/healthz`, { signal: AbortSignal.timeout(300_000) });
  // No RSS after it: writing the snapshot itself takes hundreds of MiB.
  console.log(
    `  heap snapshot (${signal}) written in ${((performance.now() - started) / 1000).toFixed(1)} s (see --diagnostic-dir; ` +
      `summarize with test/bench/profile-summary.ts FILE --per NODES)`,
  );
}

async function shutDown(fleet: Fleet): Promise<void> {
  for (const w of fleet.workers) w.tell({ type: 'stop' });
  await Promise.all(fleet.workers.map((w) => stop(w.child, 5_000)));
  await fleet.plane?.stop();
}

function lagLine(s: Summary): string {
  if (s.count === 0) return 'no samples';
  return `p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, max ${s.max.toFixed(1)} ms (${s.count} samples)`;
}

function mergeCounts(counts: Record<string, number>[]): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const c of counts) for (const [k, v] of Object.entries(c)) merged[k] = (merged[k] ?? 0) + v;
  return merged;
}

/** The 1, 5 and 15 minute load averages: other work on the machine skews every figure here. */
function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function hardFileLimit(): string {
  try {
    return execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
  return n;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function kib(n: number): string {
  return n.toFixed(1);
}

function mib(kibValue: number): string {
  return (kibValue / 1024).toFixed(1);
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(0);
}
