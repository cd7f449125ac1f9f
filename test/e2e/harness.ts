// End-to-end harness: the `muster` command as child processes (a control plane, runner agents,
// CLI commands; the run's compiled copy of bin/muster, see test/muster-process.ts), a small
// admin API client, a fake node that speaks the wire protocol over raw TCP for what a real agent
// never does, and a TCP proxy whose connections a test can cut. Everything started through a
// Harness is stopped by `close()`: processes get a polite signal, then SIGKILL; temp dirs are
// removed.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CODEC_JSON, decodeBody, encodeBody, type Codec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import type { EnvelopeOf, MessageData, NodeMessageType, PlaneMessage, PlaneMessageType } from '../../protocol/messages.js';
import { validatePlaneMessage } from '../../protocol/validator.js';
import type { JobAnswer } from '../../supervisor/admin/wire-types.js';
import { loadConfig } from '../../supervisor/config.js';
import { openTokenStore } from '../../supervisor/store/open-stores.js';
import { loadSecret } from '../../supervisor/tokens/secret.js';
import { TokenAuthority } from '../../supervisor/tokens/tokens.js';
import type { LogRecord } from '../../supervisor/store/job-store.js';
import type { NodeView } from '../../supervisor/admin/wire-types.js';
import { MUSTER_BIN } from '../muster-process.js';

/** What a real agent reports as `max_resources.cpu_cores`: a job asking this much fills it. */
export const AGENT_CPUS = Math.max(1, cpus().length);

/** Short protocol timers, so that failures are detected in seconds; only the TCP and Unix listeners. */
export const FAST_PLANE_ENV: Readonly<Record<string, string>> = {
  MUSTER_WS: 'off',
  MUSTER_GRPC: 'off',
  MUSTER_HEARTBEAT_INTERVAL_MS: '500',
  MUSTER_MISSED_HEARTBEATS: '3',
  MUSTER_ACCEPT_TIMEOUT_MS: '2000',
  MUSTER_REGISTER_TIMEOUT_MS: '5000',
  MUSTER_SHUTDOWN_GRACE_MS: '1000',
};

const STOP_GRACE_MS = 5_000;
const AGENT_SIGNAL_REPEAT_MS = 300;

// ---------------------------------------------------------------- polling

/** Thrown by a `waitFor` probe when the condition can no longer come true: ends the wait at once. */
export class GiveUp extends Error {
  override readonly name = 'GiveUp';
}

/**
 * Polls `probe` every 100 ms until it returns something other than undefined or false, and
 * returns that. A probe that throws is asked again (the last error is reported), except for
 * `GiveUp`. Throws after `timeoutMs`, naming `what` and the last value seen.
 */
export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  what = 'condition',
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (err) {
      if (err instanceof GiveUp) throw new Error(`gave up waiting for ${what}: ${err.message}`, { cause: err });
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${describe(last)}`);
    await delay(100);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.message;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

// ---------------------------------------------------------------- child processes

/** A child process whose stdout and stderr are kept as lines. */
export class ManagedProcess {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (text: string) => {
        const parts = (partial + text).split('\n');
        partial = parts.pop() ?? '';
        this.lines.push(...parts);
      });
    }
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get isRunning(): boolean {
    return this.exitInfo === undefined;
  }

  /** JSON log lines (pino) of the process. */
  jsonLines(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.lines) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // A line cut by a crash: not a log record.
      }
    }
    return out;
  }

  /** The first JSON log line matching `match`, waiting for it. */
  async waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    try {
      return await this.pollLog(match, timeoutMs, what);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- last output of ${this.name} (pid ${this.pid}):\n${this.tail()}`, { cause: err });
    }
  }

  private pollLog(match: (line: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    return waitFor(
      () => {
        const found = this.jsonLines().find(match);
        if (found !== undefined) return found;
        if (!this.isRunning) throw new GiveUp(`${this.name} exited (code ${this.exitInfo?.code}, signal ${this.exitInfo?.signal})`);
        return undefined;
      },
      timeoutMs,
      `${this.name}: ${what}`,
    );
  }

  /** The last lines of output, for failure messages. */
  tail(n = 20): string {
    return this.lines.slice(-n).join('\n');
  }

  kill9(): void {
    if (this.isRunning) this.child.kill('SIGKILL');
  }

  /**
   * Sends `signal`, again every `repeatMs` when given (for an agent, a second SIGTERM kills its
   * jobs and exits), and SIGKILL once `graceMs` have passed.
   */
  async stop(signal: NodeJS.Signals, graceMs = STOP_GRACE_MS, repeatMs?: number): Promise<void> {
    const until = Date.now() + graceMs;
    let sent = false;
    // A stopped (SIGSTOP) process would not see the signal until it runs again.
    if (this.isRunning) this.child.kill('SIGCONT');
    while (this.isRunning && Date.now() < until) {
      if (!sent || repeatMs !== undefined) this.child.kill(signal);
      sent = true;
      await Promise.race([this.exited, delay(Math.min(repeatMs ?? 100, Math.max(0, until - Date.now())))]);
    }
    this.kill9();
    await this.exited;
  }
}

/** Environment for a child: ours without any MUSTER_* setting, plus `extra`. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  return { ...clean, ...extra };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `muster ARGS...` to completion. */
export function runMuster(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(MUSTER_BIN, args, { cwd: tmpdir(), env: childEnv(env), timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------- the harness

export interface PlaneOptions {
  /** Reuse a data dir (a restart); default a new temp dir. */
  dataDir?: string;
  /** `host:port` of the TCP listener; default port 0. */
  tcp?: string;
  /** `host:port` of the admin API; default port 0. */
  http?: string;
  /** Extra MUSTER_* settings over FAST_PLANE_ENV. */
  env?: Record<string, string>;
  /** More `muster serve` arguments, e.g. `--nats URL --control-plane-id ID` (kept by `restart`). */
  args?: string[];
  /** The process's name in failure messages; default `plane`. */
  name?: string;
  /** An admin API token the plane accepts (e.g. one minted once for replicas sharing a secret); default: minted on its data dir. */
  adminToken?: string;
}

export interface AgentOptions {
  /** Node URL to dial; default the plane's TCP URL. */
  url?: string;
  /** Several node URLs, tried in turn (one `--url` each): a cluster's replicas. Overrides `url`. */
  urls?: string[];
  tags?: Record<string, string>;
  /** Default: a fresh node registration token. */
  token?: string;
  /** Extra environment (OTEL_* settings, say). */
  env?: Record<string, string>;
}

export interface Gate {
  /** Give it to the job as `$GATE`. */
  path: string;
  open(): void;
}

export class Harness {
  private readonly processes = new Set<ManagedProcess>();
  private readonly dirs = new Set<string>();
  private readonly closers = new Set<() => void | Promise<void>>();
  private readonly gates = new Set<Gate>();

  tempDir(prefix = 'muster-e2e-'): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.dirs.add(dir);
    return dir;
  }

  /**
   * A file a job can wait for (`while [ ! -e "$GATE" ]; do sleep 0.05; done`), so that a test
   * decides when it ends. `close()` opens every gate, so that no job is left waiting.
   */
  gate(): Gate {
    const path = join(this.tempDir('muster-gate-'), 'open');
    const gate = { path, open: () => writeFileSync(path, '') };
    this.gates.add(gate);
    return gate;
  }

  /** Starts `muster serve` and waits for its "control plane ready" line. */
  async startPlane(options: PlaneOptions = {}): Promise<PlaneProcess> {
    const dataDir = options.dataDir ?? this.tempDir('muster-plane-');
    const env = { ...FAST_PLANE_ENV, ...options.env };
    const args = ['serve', '--data-dir', dataDir, '--tcp', options.tcp ?? '127.0.0.1:0'];
    args.push('--unix', join(dataDir, 'muster.sock'), '--http', options.http ?? '127.0.0.1:0', ...(options.args ?? []));
    const proc = this.spawn(options.name ?? 'plane', args, dataDir, env);
    const ready = await proc.waitForLog((l) => l.msg === 'control plane ready', 20_000, 'ready line');
    const listeners = ready.listeners as string[];
    const tcpUrl = listeners.find((u) => u.startsWith('tcp://'));
    const unixUrl = listeners.find((u) => u.startsWith('unix://'));
    if (tcpUrl === undefined || unixUrl === undefined || typeof ready.http !== 'string') {
      throw new Error(`unexpected ready line: ${JSON.stringify(ready)}`);
    }
    const adminToken = options.adminToken ?? (await this.mintToken(dataDir, 'admin'));
    const kept = { dataDir, env: options.env ?? {}, args: options.args ?? [], name: options.name ?? 'plane' };
    return new PlaneProcess(this, proc, { ...kept, tcpUrl, unixUrl, httpUrl: ready.http, adminToken });
  }

  /**
   * What `muster token create --role ROLE --data-dir DIR` does offline (cli/token-command.ts),
   * in this process: minted with the data dir's secret (an hour, the command's default) and
   * recorded in its store. A process start saved per plane and agent; the command itself is
   * tested in test/cli/cli.test.ts and test/supervisor/tokens/revocation.test.ts.
   */
  async mintToken(dataDir: string, role: 'node' | 'viewer' | 'operator' | 'admin'): Promise<string> {
    const config = loadConfig({ env: {}, overrides: { dataDir } });
    const minted = await new TokenAuthority(loadSecret(config)).mint({ role, ttlSeconds: 3600 });
    const store = openTokenStore(config, true);
    try {
      await store.recordToken(minted.info);
    } finally {
      await store.close();
    }
    return minted.token;
  }

  /** Starts `muster agent` and waits for it to register; `nodeId` is what the plane gave it. */
  async startAgent(plane: PlaneProcess, options: AgentOptions = {}): Promise<AgentProcess> {
    const token = options.token ?? (await this.mintToken(plane.dataDir, 'node'));
    const workDir = this.tempDir('muster-agent-');
    const urls = options.urls ?? [options.url ?? plane.tcpUrl];
    const args = ['agent', ...urls.flatMap((url) => ['--url', url]), '--token', token, '--work-dir', workDir];
    for (const [k, v] of Object.entries(options.tags ?? {})) args.push('--tag', `${k}=${v}`);
    const proc = this.spawn('agent', args, workDir, options.env ?? {});
    const registered = await proc.waitForLog((l) => l.msg === 'registered', 20_000, 'registered line');
    return new AgentProcess(proc, String(registered.node_id), workDir);
  }

  /** Connects a fake node to a `tcp://` URL (not yet registered). */
  async fakeNode(url: string): Promise<FakeNode> {
    const node = await FakeNode.connect(url);
    this.closers.add(() => node.drop());
    return node;
  }

  /** A TCP proxy in front of `target` (`tcp://host:port`). */
  async proxy(target: string): Promise<TcpProxy> {
    const proxy = await TcpProxy.start(target);
    this.closers.add(() => proxy.close());
    return proxy;
  }

  /** Runs `muster ARGS...` in the background; `close()` stops it. */
  spawn(name: string, args: string[], cwd: string, env: Record<string, string>): ManagedProcess {
    const proc = new ManagedProcess(name, spawn(MUSTER_BIN, args, { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
    this.processes.add(proc);
    return proc;
  }

  /** Stops agents first (a second SIGTERM kills their jobs), then planes; removes temp dirs. */
  async close(): Promise<void> {
    for (const gate of this.gates) gate.open();
    for (const close of this.closers) await close();
    const all = [...this.processes];
    await Promise.all(all.filter((p) => p.name === 'agent').map((p) => p.stop('SIGTERM', STOP_GRACE_MS, AGENT_SIGNAL_REPEAT_MS)));
    await Promise.all(all.filter((p) => p.name !== 'agent').map((p) => p.stop('SIGTERM')));
    for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
  }
}

export class PlaneProcess {
  readonly api: AdminClient;

  constructor(
    private readonly harness: Harness,
    readonly proc: ManagedProcess,
    readonly info: {
      dataDir: string;
      env: Record<string, string>;
      args: string[];
      name: string;
      tcpUrl: string;
      unixUrl: string;
      httpUrl: string;
      adminToken: string;
    },
  ) {
    this.api = new AdminClient(info.httpUrl, info.adminToken);
  }

  get dataDir(): string {
    return this.info.dataDir;
  }

  get tcpUrl(): string {
    return this.info.tcpUrl;
  }

  get unixUrl(): string {
    return this.info.unixUrl;
  }

  get httpUrl(): string {
    return this.info.httpUrl;
  }

  /** One SIGTERM (a graceful shutdown; a second would mean "now") and wait for the exit; the exit status. */
  async stop(): Promise<number | null> {
    await this.proc.stop('SIGTERM', 10_000);
    return (await this.proc.exited).code;
  }

  /** Starts a new plane on the same data dir, TCP port and admin API port (the plane must be stopped). */
  restart(): Promise<PlaneProcess> {
    const http = new URL(this.httpUrl).host;
    const { env, args, name, adminToken } = this.info;
    return this.harness.startPlane({ dataDir: this.dataDir, tcp: new URL(this.tcpUrl).host, http, env, args, name, adminToken });
  }
}

export class AgentProcess {
  constructor(
    readonly proc: ManagedProcess,
    readonly nodeId: string,
    readonly workDir: string,
  ) {}

  /** Where this agent runs attempt `attempt` of a job (what `pwd` prints in it). */
  jobDir(jobId: string, attempt: number): string {
    return join(realpathSync(this.workDir), `${jobId}-${attempt}`);
  }

  /** Attempts of `jobId` this agent started, from its log. */
  startedAttempts(jobId: string): number[] {
    return this.proc
      .jsonLines()
      .filter((l) => l.msg === 'job started' && l.job_id === jobId)
      .map((l) => Number(l.attempt));
  }

  /** Waits until this agent has started `attempt` of `jobId`. */
  waitForStart(jobId: string, attempt: number, timeoutMs = 15_000): Promise<true> {
    return waitFor(() => this.startedAttempts(jobId).includes(attempt), timeoutMs, `agent started ${jobId}#${attempt}`);
  }

  /** `kill -9`: no goodbye; its jobs' watchdogs kill their processes. */
  kill9(): void {
    this.proc.kill9();
  }

  /** SIGTERM twice: the first drains, the second kills running jobs and exits. */
  stop(): Promise<void> {
    return this.proc.stop('SIGTERM', STOP_GRACE_MS, AGENT_SIGNAL_REPEAT_MS);
  }
}

// ---------------------------------------------------------------- admin API client

export interface SubmitBody {
  job: {
    command: string[];
    name?: string;
    timeout?: { secs: number; nanos: number };
    resource_requirements?: { cpu_cores?: number; memory_mb?: number; disk_gb?: number };
    environment?: Record<string, string>;
  };
  priority?: 'Low' | 'Normal' | 'High' | 'Critical';
  selector?: { runner_type?: string; job_type?: string; tags?: Record<string, string> };
  max_attempts?: number;
  deadline?: string;
}

export interface Answer<T> {
  status: number;
  body: T;
}

export const TERMINAL = new Set(['Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered']);

export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<Answer<T>> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
  }

  async submit(body: SubmitBody): Promise<string> {
    const answer = await this.request<{ job_id: string }>('POST', '/v1/jobs', body);
    if (answer.status !== 201) throw new Error(`submit answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return answer.body.job_id;
  }

  async job(jobId: string): Promise<JobAnswer> {
    const answer = await this.request<JobAnswer>('GET', `/v1/jobs/${jobId}`);
    if (answer.status !== 200) throw new Error(`GET job answered ${answer.status}: ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  async logs(jobId: string): Promise<LogRecord[]> {
    const answer = await this.request<LogRecord[]>('GET', `/v1/jobs/${jobId}/logs`);
    if (answer.status !== 200) throw new Error(`GET logs answered ${answer.status}`);
    return answer.body;
  }

  /** The job's stdout as stored chunk by chunk, for one attempt (default: all). */
  async stdout(jobId: string, attempt?: number): Promise<string> {
    const chunks = await this.logs(jobId);
    return chunks
      .filter((c) => c.stream === 'stdout' && (attempt === undefined || c.attempt === attempt))
      .map((c) => c.data)
      .join('');
  }

  cancel(jobId: string): Promise<Answer<{ job_id: string; state: string }>> {
    return this.request('POST', `/v1/jobs/${jobId}/cancel`);
  }

  async nodes(): Promise<NodeView[]> {
    return (await this.request<NodeView[]>('GET', '/v1/nodes')).body;
  }

  async node(nodeId: string): Promise<NodeView | undefined> {
    return (await this.nodes()).find((n) => n.node_id === nodeId);
  }

  drain(nodeId: string): Promise<Answer<unknown>> {
    return this.request('POST', `/v1/nodes/${nodeId}/drain`);
  }

  /** Waits until the job is in one of `states` (default: any terminal one). */
  waitForJob(jobId: string, timeoutMs: number, states: ReadonlySet<string> = TERMINAL): Promise<JobAnswer> {
    return waitFor(
      async () => {
        const job = await this.job(jobId);
        return states.has(job.state) ? job : undefined;
      },
      timeoutMs,
      `job ${jobId} in ${[...states].join('|')}`,
    );
  }
}

// ---------------------------------------------------------------- fake node

export interface FakeRegistration {
  token: string;
  tags?: Record<string, string>;
  cpuCores?: number;
  resume?: { node_id: string; running_jobs: string[]; unacked_results: string[] };
}

interface Taken {
  message: PlaneMessage;
  taken: boolean;
}

/**
 * A node that speaks the protocol itself (JSON frames over raw TCP), so that a test can do what
 * a correct agent never does. It validates every frame from the plane and keeps it; after a
 * RegisterAck it heartbeats on its own at the interval the plane gave.
 */
export class FakeNode {
  readonly received: Taken[] = [];
  /** Frames from the plane that failed validation: a conforming plane leaves this empty. */
  readonly invalid: string[] = [];
  nodeId: string | undefined;
  sessionToken: string | undefined;
  private readonly decoder = new FrameDecoder();
  private heartbeat: NodeJS.Timeout | undefined;
  private closedFlag = false;
  private nextId = 0;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk, (codecByte, body) => this.onFrame(codecByte, body));
      } catch (err) {
        this.invalid.push(describe(err));
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.closedFlag = true;
      clearInterval(this.heartbeat);
    });
    socket.on('error', () => {});
  }

  static connect(url: string): Promise<FakeNode> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: hostname, port: Number(port) });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new FakeNode(socket));
      });
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  send<T extends NodeMessageType>(type: T, data: MessageData<T>): void {
    if (this.closedFlag) throw new Error(`fake node: cannot send ${type} on a closed connection`);
    this.nextId += 1;
    this.socket.write(encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, { type, id: `f-${this.nextId}`, data })));
  }

  /** Sends RegisterNode, waits for RegisterAck (or a fatal Error), starts heartbeating. */
  async register(reg: FakeRegistration): Promise<MessageData<'RegisterAck'>> {
    const data: MessageData<'RegisterNode'> = {
      node_info: {
        hostname: 'fake-node',
        ip_address: '127.0.0.1',
        port: 0,
        node_type: 'runner',
        version: '0.0.0-fake',
        platform: 'linux',
        architecture: 'x64',
        tags: reg.tags ?? {},
      },
      capabilities: {
        runner_types: ['shell'],
        max_resources: { cpu_cores: reg.cpuCores ?? 1, memory_mb: 1024, disk_gb: 10, network_mbps: 0 },
        supported_job_types: ['command'],
        features: [],
        protocols: ['tcp'],
      },
      auth_token: reg.token,
    };
    if (reg.resume !== undefined) data.resume = reg.resume;
    this.send('RegisterNode', data);
    const answer = await this.take((m) => m.type === 'RegisterAck' || m.type === 'Error', 10_000, 'RegisterAck');
    if (answer.type !== 'RegisterAck') throw new Error(`registration refused: ${JSON.stringify(answer.data)}`);
    this.nodeId = answer.data.node_id;
    this.sessionToken = answer.data.session_token;
    this.sendHeartbeat();
    this.heartbeat = setInterval(() => this.sendHeartbeat(), answer.data.heartbeat_interval_ms);
    return answer.data;
  }

  sendHeartbeat(): void {
    if (this.closedFlag || this.nodeId === undefined) return;
    this.send('Heartbeat', {
      node_id: this.nodeId,
      status: 'Ready',
      resources: { cpu_cores: 1, memory_mb: 1024, available_cpu: 1, available_memory_mb: 1024 },
      metrics: { cpu_usage_percent: 0, memory_usage_percent: 0, active_jobs: 0, completed_jobs: 0, failed_jobs: 0 },
      timestamp: new Date().toISOString(),
    });
  }

  /** A JobResult for `attempt` with the given outcome fields. */
  sendResult(jobId: string, attempt: number, outcome: { status?: 'Completed' | 'Failed'; exit_code?: number; stdout?: string } = {}): void {
    const now = new Date().toISOString();
    this.send('JobResult', {
      job_id: jobId,
      attempt,
      node_id: this.nodeId!,
      result: {
        status: outcome.status ?? 'Completed',
        exit_code: outcome.exit_code ?? 0,
        stdout: outcome.stdout ?? '',
        stderr: '',
        artifacts: [],
        started_at: now,
        completed_at: now,
      },
      metrics: { duration_ms: 1, cpu_time_ms: 0, memory_peak_mb: 0 },
    });
  }

  /** The first message of `type` (and matching `match`) not taken yet, waiting for it. */
  async next<T extends PlaneMessageType>(
    type: T,
    match: (data: MessageData<T>) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<EnvelopeOf<T>> {
    const found = await this.take((m) => m.type === type && match(m.data as MessageData<T>), timeoutMs, type);
    return found as EnvelopeOf<T>;
  }

  /** Every message of `type` received so far (taken or not). */
  all<T extends PlaneMessageType>(type: T, match: (data: MessageData<T>) => boolean = () => true): Array<EnvelopeOf<T>> {
    return this.received
      .map((r) => r.message)
      .filter((m) => m.type === type && match(m.data as MessageData<T>)) as Array<EnvelopeOf<T>>;
  }

  /** Drops the connection without a goodbye, as a broken network would. */
  drop(): void {
    clearInterval(this.heartbeat);
    this.socket.destroy();
  }

  private async take(match: (m: PlaneMessage) => boolean, timeoutMs: number, what: string): Promise<PlaneMessage> {
    return waitFor(
      () => {
        const entry = this.received.find((r) => !r.taken && match(r.message));
        if (entry !== undefined) {
          entry.taken = true;
          return entry.message;
        }
        if (this.closedFlag) throw new GiveUp(`connection closed; got ${this.received.map((r) => r.message.type).join(',')}`);
        return undefined;
      },
      timeoutMs,
      `fake node: ${what}`,
    );
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    try {
      const message = validatePlaneMessage(decodeBody(codecByte as Codec, body));
      this.received.push({ message, taken: false });
    } catch (err) {
      this.invalid.push(describe(err));
    }
  }
}

// ---------------------------------------------------------------- TCP proxy

/**
 * Forwards TCP connections to a target. `cut()` breaks the live ones; while `block()`ed, new
 * connections are accepted but held (their bytes wait, nothing reaches the target), as over a
 * partitioned network; `unblock()` forwards them. Holding rather than refusing keeps a client's
 * reconnect backoff from growing while it is cut off, so tests stay fast.
 */
export class TcpProxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private held: net.Socket[] = [];
  private blocked = false;

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
  ) {
    server.on('connection', (client) => this.onConnection(client));
  }

  static start(target: string): Promise<TcpProxy> {
    const { hostname, port } = new URL(target);
    const server = net.createServer();
    const proxy = new TcpProxy(server, { host: hostname, port: Number(port) });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(proxy)));
  }

  get url(): string {
    const address = this.server.address() as net.AddressInfo;
    return `tcp://127.0.0.1:${address.port}`;
  }

  /** Destroys every live connection, both sides. */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** New connections are held until `unblock()`. */
  block(): void {
    this.blocked = true;
  }

  /** Forwards the held connections, and every new one. */
  unblock(): void {
    this.blocked = false;
    const held = this.held;
    this.held = [];
    for (const client of held) if (!client.destroyed) this.forward(client);
  }

  close(): Promise<void> {
    this.cut();
    for (const client of this.held) client.destroy();
    this.held = [];
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: net.Socket): void {
    client.on('error', () => client.destroy());
    if (this.blocked) {
      // Paused: what the client sends stays in the socket until it is forwarded.
      client.pause();
      this.held.push(client);
      return;
    }
    this.forward(client);
  }

  private forward(client: net.Socket): void {
    const upstream = net.connect(this.target);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    for (const s of pair) {
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

/** A unique tag value per test, so that jobs go only to the nodes that test started. */
let tagCounter = 0;
export function uniqueTag(prefix: string): string {
  tagCounter += 1;
  return `${prefix}-${process.pid}-${tagCounter}`;
}
