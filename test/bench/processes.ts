// Starts what the benchmarks measure as separate processes: a real control plane
// (`muster serve`) and the raw echo baseline, and stops them.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface RunningPlane {
  /** The TCP listener: `tcp://`, or `tls://` when the plane serves TLS. */
  tcpUrl: URL;
  /** Every node listener the plane printed (`tcp://`, `ws://.../v1/connect`, `unix:///...`, ...). */
  nodeUrls: URL[];
  httpUrl: string;
  dataDir: string;
  /** The plane's own process id (the Node process, also when started through `sh`), for /proc. */
  pid: number;
  /** Resolves when the process has exited (stopped, or killed by the bench). */
  exited: Promise<void>;
  stop(): Promise<void>;
}

export interface PlaneOptions {
  /** `--log-level` of the plane; default `info`. */
  logLevel?: string;
  /** Raise the open-files limit of the plane to this (capped at the hard limit) before it starts. */
  fdLimit?: number;
  /** How long `stop` waits after SIGTERM before SIGKILL; default 5 s. */
  stopTimeoutMs?: number;
  /** More `muster serve` flags, after the defaults (a later flag wins), e.g. `['--ws', '127.0.0.1:0']`. */
  args?: string[];
  /** Node flags for the plane besides BENCH_PLANE_NODE_ARGS, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** Append the plane's log (its stdout after the listener lines) to this file; default: read and dropped. */
  logFile?: string;
  /** Start on this data directory (a plane restarted on its predecessor's store); default a new one. */
  dataDir?: string;
}

/**
 * A benchmark floods on purpose (one node far over 1,000 msg/s, thousands of nodes from one
 * address): the plane's rate limits are raised out of the way but left on, so that their
 * per-frame cost is part of what is measured. The environment and the caller's `env` win.
 */
const BENCH_LIMITS: Record<string, string> = {
  MUSTER_NODE_MESSAGE_RATE: '1000000000',
  MUSTER_NODE_MESSAGE_BURST: '1000000000',
  MUSTER_NODE_BYTE_RATE: '1000000000000',
  MUSTER_NODE_BYTE_BURST: '1000000000000',
  MUSTER_NODE_DECODE_MS_PER_SECOND: '0',
  MUSTER_CONNECTION_RATE: '1000000',
  MUSTER_CONNECTION_BURST: '1000000',
  MUSTER_API_REQUEST_RATE: '1000000',
  MUSTER_API_REQUEST_BURST: '1000000',
};

/** Node flags for the plane from BENCH_PLANE_NODE_ARGS (e.g. --cpu-prof), which NODE_OPTIONS refuses. */
export function planeNodeArgs(): string[] {
  return (process.env.BENCH_PLANE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
}

export async function startPlane(env: Record<string, string> = {}, options: PlaneOptions = {}): Promise<RunningPlane> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'muster-bench-'));
  const args = [
    ...planeNodeArgs(),
    ...(options.nodeArgs ?? []),
    join(root, 'bin/muster'),
    'serve',
    '--data-dir',
    dataDir,
    '--tcp',
    '127.0.0.1:0',
    '--unix',
    'off',
    // Not the fixed default ports: a bench must not clash with a running plane or another bench.
    '--ws',
    'off',
    '--grpc',
    'off',
    '--http',
    '127.0.0.1:0',
    '--log-level',
    options.logLevel ?? 'info',
    ...(options.args ?? []),
  ];
  const [command, commandArgs] = withFdLimit(options.fdLimit, process.execPath, args);
  const child = spawn(command, commandArgs, { env: { ...BENCH_LIMITS, ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // `muster serve` prints its listeners as plain lines after startup, whatever the log level.
  const lines = await linesUntil(child, (line) => line.startsWith(ADMIN_LINE), options.logFile);
  const nodeUrls = lines.filter((l) => l.startsWith(NODES_LINE)).map((l) => new URL(l.slice(NODES_LINE.length)));
  const tcp = nodeUrls.find((u) => u.protocol === 'tcp:' || u.protocol === 'tls:');
  if (tcp === undefined) throw new Error(`the plane printed no TCP listener: ${lines.join(' | ')}`);
  return {
    tcpUrl: tcp,
    nodeUrls,
    httpUrl: lines.find((l) => l.startsWith(ADMIN_LINE))!.slice(ADMIN_LINE.length),
    dataDir,
    pid: child.pid!,
    exited,
    stop: async () => {
      await stop(child, options.stopTimeoutMs);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const NODES_LINE = 'muster: nodes connect at ';
const ADMIN_LINE = 'muster: admin API at ';

/**
 * The command and arguments that run `command args` with its open-files limit raised to `limit`,
 * or to the hard limit when that is lower (`ulimit` is a shell builtin; `exec` keeps the pid).
 */
export function withFdLimit(limit: number | undefined, command: string, args: string[]): [string, string[]] {
  if (limit === undefined) return [command, args];
  const script = `ulimit -n ${limit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"`;
  return ['sh', ['-c', script, command, ...args]];
}

/** The raw echo baselines of test/bench/echo-servers.ts in one process; `args` as its command line. */
export async function startEchoServers(args: string[]): Promise<{ urls: URL[]; pid: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/bench/echo-servers.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = await linesUntil(child, (line) => line === 'ready');
  return { urls: lines.slice(0, -1).map((l) => new URL(l)), pid: child.pid!, stop: () => stop(child) };
}

/** The child's stdout lines up to and including the first that matches; the rest is drained unread, or into `restTo`. */
function linesUntil(child: ChildProcess, match: (line: string) => boolean, restTo?: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const seen: string[] = [];
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      seen.push(line);
      if (match(line)) {
        lines.removeAllListeners('line');
        if (restTo === undefined) child.stdout!.resume();
        else child.stdout!.pipe(createWriteStream(restTo, { flags: 'a' }));
        resolve(seen);
      }
    });
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before it was ready`)));
  });
}

/** SIGTERM, then SIGKILL after `timeoutMs` if the child is still there. */
export function stop(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), timeoutMs).unref();
  });
}
