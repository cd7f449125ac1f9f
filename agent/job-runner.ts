// Runs one JobAssignment as a child process: argv without a shell, a fresh working
// directory per attempt, output streamed as LogChunks with secrets masked, the job's
// timeout and cancellation enforced on the whole process group (SIGTERM, then SIGKILL
// after a grace period), and a JobOutcome with metrics at the end. Its guard (job-guard.ts)
// keeps the job's processes from outliving it or the agent.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Duration, JobMetrics, JobOutcome, LogStream, MessageData, ResultArtifact, ResultStatus } from '../protocol/messages.js';
import type { Reserved } from './host-facts.js';
import type { ProcessGuard } from './job-guard.js';
import { AGENT_DEFAULTS } from './agent-options.js';
import { OutputStream } from './output-stream.js';
import { PeakMemorySampler, takeReapedChildrenCpuMs } from './process-usage.js';
import { SecretMasker } from '../protocol/secret-masker.js';

export type JobAssignment = MessageData<'JobAssignment'>;
export type LogChunkData = MessageData<'LogChunk'>;

// setTimeout fires at once for delays past 2^31-1 ms; longer timeouts are clamped to this.
const MAX_TIMER_MS = 2_147_483_647;

export interface JobRunnerOptions {
  assignment: JobAssignment;
  /** The agent's work directory; the job runs in `<workDir>/<job_id>-<attempt>`. */
  workDir: string;
  /** Called for every LogChunk, in order per stream. */
  onChunk(chunk: LogChunkData): void;
  logger?: Logger;
  /** Between SIGTERM and SIGKILL. Default 5 s. */
  killGraceMs?: number;
  /** Output is sent at least this often. Default 100 ms. */
  flushIntervalMs?: number;
  /** Largest chunk `data`, in bytes. Default 64 KiB. */
  maxChunkBytes?: number;
  /** How much of each stream's end the result keeps, in bytes. Default 64 KiB. */
  resultTailBytes?: number;
  /**
   * After the main process exits, how long its output pipes may stay open (held by a
   * descendant that left the process group) before they are no longer read. Default 2 s.
   */
  pipeCloseWaitMs?: number;
  /** How often the process's peak memory is sampled. Default 250 ms. */
  memorySampleIntervalMs?: number;
  /** Environment the job's PATH and HOME come from. Default `process.env`. */
  baseEnv?: NodeJS.ProcessEnv;
  /** Keep the working directory after the job (default: removed). */
  keepWorkspace?: boolean;
  /** Keeps the job's processes from outliving it or the agent (job-guard.ts). Default none. */
  guard?: ProcessGuard;
  /**
   * The job's process starts only once this settles: an earlier attempt of the same job
   * must have exited first. Default: at once.
   */
  after?: Promise<unknown>;
  /**
   * The job's W3C trace context, set as `TRACEPARENT` in its environment so that a build tool
   * can continue the trace (the OpenTelemetry convention for environment carriers). Default none.
   */
  traceparent?: string;
  /**
   * Once the command has ended (Completed or Failed), before the working directory goes: uploads
   * the job's artifacts from it (PROTOCOL.md section 8) and resolves with those stored, which the
   * result lists. Default: none.
   */
  artifacts?: (cwd: string) => Promise<ResultArtifact[]>;
}

/** The runner's settings that the agent passes on from its own options (agent-options.ts). */
export const RUNNER_TUNING_KEYS = [
  'killGraceMs',
  'flushIntervalMs',
  'maxChunkBytes',
  'resultTailBytes',
  'pipeCloseWaitMs',
  'memorySampleIntervalMs',
] as const;
export type RunnerTuning = Partial<Pick<JobRunnerOptions, (typeof RUNNER_TUNING_KEYS)[number]>>;

export interface JobRunOutcome {
  result: JobOutcome;
  metrics: JobMetrics;
}

export class JobRunner {
  readonly jobId: string;
  readonly attempt: number;
  /** What the job takes from the node while it runs. */
  readonly reserved: Reserved;
  /** Settles once the process is gone and its output flushed; never rejects. */
  readonly done: Promise<JobRunOutcome>;

  private readonly streams: Record<LogStream, OutputStream>;
  private readonly cwd: string;
  private startedAt = new Date();
  private readonly killGraceMs: number;
  private readonly flushIntervalMs: number;
  private child: ChildProcess | undefined;
  private memory: PeakMemorySampler | undefined;
  private resolveDone!: (outcome: JobRunOutcome) => void;
  private endStatus: ResultStatus | undefined;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private cpuTimeMs = 0;
  private finished = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private pipeTimer: NodeJS.Timeout | undefined;

  /** Starts the job at once, or once `after` has settled. */
  constructor(private readonly options: JobRunnerOptions) {
    const { assignment } = options;
    this.jobId = assignment.job_id;
    this.attempt = assignment.attempt;
    this.reserved = {
      cpuCores: assignment.job.resource_requirements.cpu_cores,
      memoryMb: assignment.job.resource_requirements.memory_mb,
    };
    this.killGraceMs = options.killGraceMs ?? AGENT_DEFAULTS.killGraceMs;
    this.flushIntervalMs = options.flushIntervalMs ?? AGENT_DEFAULTS.flushIntervalMs;
    this.cwd = join(options.workDir, `${assignment.job_id}-${assignment.attempt}`);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    const masker = (): SecretMasker => new SecretMasker(Object.values(assignment.execution_context.secrets));
    const stream = (name: LogStream): OutputStream =>
      new OutputStream({
        stream: name,
        masker: masker(),
        maxChunkBytes: options.maxChunkBytes ?? AGENT_DEFAULTS.maxChunkBytes,
        tailBytes: options.resultTailBytes ?? AGENT_DEFAULTS.resultTailBytes,
        emit: (seq, data) => options.onChunk({ job_id: this.jobId, attempt: this.attempt, stream: name, seq, data }),
      });
    this.streams = { stdout: stream('stdout'), stderr: stream('stderr') };
    if (options.after === undefined) this.start();
    else void options.after.then(() => this.start());
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /** Stops the job (SIGTERM, SIGKILL after the grace period); its status becomes `Cancelled`. */
  cancel(reason: string): void {
    this.terminate('Cancelled', `muster-agent: job cancelled: ${reason}\n`);
  }

  /** SIGKILL to the whole group now, for an agent that is going away at once. */
  kill(): void {
    if (this.finished) return;
    this.endStatus ??= 'Cancelled';
    if (this.child === undefined) this.finish();
    else this.signalGroup('SIGKILL');
  }

  /** Chunks of `stream` already sent, from `nextSeq` on, for a LogResync. */
  chunksFrom(stream: LogStream, nextSeq: number): LogChunkData[] {
    return this.streams[stream]
      .chunksFrom(nextSeq)
      .map(({ seq, data }) => ({ job_id: this.jobId, attempt: this.attempt, stream, seq, data }));
  }

  private start(): void {
    // Cancelled or killed while it waited for an earlier attempt: it never runs.
    if (this.finished) return;
    this.startedAt = new Date();
    const { command } = this.options.assignment.job;
    try {
      // A fresh directory: nothing left from an earlier run of the same attempt.
      rmSync(this.cwd, { recursive: true, force: true });
      mkdirSync(this.cwd, { recursive: true });
    } catch (err) {
      this.failToStart(null, `muster-agent: cannot create working directory ${this.cwd}: ${errorText(err)}\n`);
      return;
    }
    let child: ChildProcess;
    const start = (): ChildProcess =>
      spawn(command[0]!, command.slice(1), {
        cwd: this.cwd,
        env: this.environment(),
        // Its own process group, so that a timeout or cancel reaches every process it started.
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    try {
      child = this.options.guard?.spawn(start) ?? start();
    } catch (err) {
      // spawn throws at once on arguments it cannot pass (a NUL byte in argv or env).
      this.failToStart(null, `muster-agent: cannot start ${command[0]}: ${errorText(err)}\n`);
      return;
    }
    this.child = child;
    child.on('error', (err: NodeJS.ErrnoException) => this.onSpawnError(child, err));
    if (child.pid === undefined) return;
    this.options.guard?.started(child.pid);
    this.memory = new PeakMemorySampler(child.pid, this.options.memorySampleIntervalMs ?? AGENT_DEFAULTS.memorySampleIntervalMs);
    child.stdout!.on('data', (b: Buffer) => this.onOutput('stdout', b));
    child.stderr!.on('data', (b: Buffer) => this.onOutput('stderr', b));
    child.on('exit', (code, signal) => this.onExit(code, signal));
    child.on('close', () => this.finish());
    const timeoutMs = durationMs(this.options.assignment.job.timeout);
    if (timeoutMs > 0) {
      this.timeoutTimer = setTimeout(
        () => this.terminate('TimedOut', `muster-agent: job timed out after ${timeoutMs / 1000} s\n`),
        Math.min(timeoutMs, MAX_TIMER_MS),
      );
    }
  }

  private environment(): NodeJS.ProcessEnv {
    const base = this.options.baseEnv ?? process.env;
    const { job, execution_context: ctx } = this.options.assignment;
    const env: NodeJS.ProcessEnv = {};
    if (base.PATH !== undefined) env.PATH = base.PATH;
    if (base.HOME !== undefined) env.HOME = base.HOME;
    // The agent's context wins over one the job names: it is the span the job's process runs in.
    const trace = this.options.traceparent === undefined ? {} : { TRACEPARENT: this.options.traceparent };
    return { ...env, ...job.environment, ...ctx.variables, ...ctx.secrets, ...trace };
  }

  private onOutput(stream: LogStream, bytes: Buffer): void {
    this.streams[stream].write(bytes);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.finished) return;
    if (!this.streams.stdout.hasPending && !this.streams.stderr.hasPending) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.streams.stdout.flush();
      this.streams.stderr.flush();
    }, this.flushIntervalMs);
  }

  private onSpawnError(child: ChildProcess, err: NodeJS.ErrnoException): void {
    // Once running, an error is a failed kill or a broken pipe: the exit still comes.
    if (child.pid !== undefined) {
      this.options.logger?.warn({ err, job_id: this.jobId }, 'job process error');
      return;
    }
    const name = this.options.assignment.job.command[0]!;
    if (err.code === 'ENOENT') this.failToStart(127, `muster-agent: ${name}: command not found\n`);
    else if (err.code === 'EACCES') this.failToStart(126, `muster-agent: ${name}: permission denied\n`);
    else this.failToStart(null, `muster-agent: cannot start ${name}: ${errorText(err)}\n`);
  }

  private failToStart(exitCode: number | null, message: string): void {
    this.exit = { code: exitCode, signal: null };
    this.streams.stderr.note(message);
    this.finish();
  }

  private terminate(status: ResultStatus, message: string): void {
    if (this.finished || this.endStatus !== undefined) return;
    this.endStatus = status;
    this.streams.stderr.note(message);
    this.scheduleFlush();
    if (this.exit !== undefined) return;
    if (this.child === undefined) {
      this.finish();
      return;
    }
    this.signalGroup('SIGTERM');
    this.killTimer = setTimeout(() => this.signalGroup('SIGKILL'), this.killGraceMs);
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is gone; the process itself may linger only if it left the group.
      try {
        this.child?.kill(signal);
      } catch {
        // Already exited.
      }
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.exit = { code, signal };
    this.cpuTimeMs = takeReapedChildrenCpuMs();
    clearTimeout(this.timeoutTimer);
    clearTimeout(this.killTimer);
    // Background processes the job left behind must not outlive it or hold its output open.
    try {
      process.kill(-this.child!.pid!, 'SIGKILL');
    } catch {
      // No one left in the group.
    }
    // And those that left the group (setsid daemons): its cgroup holds them still.
    this.options.guard?.exited();
    this.pipeTimer = setTimeout(() => {
      this.child?.stdout?.destroy();
      this.child?.stderr?.destroy();
      this.finish();
    }, this.options.pipeCloseWaitMs ?? AGENT_DEFAULTS.pipeCloseWaitMs);
  }

  private removeWorkspace(): void {
    try {
      rmSync(this.cwd, { recursive: true, force: true });
    } catch (err) {
      // A job may leave files it made unremovable; that must not lose its result.
      this.options.logger?.warn({ err, job_id: this.jobId, dir: this.cwd }, 'cannot remove job working directory');
    }
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const timer of [this.flushTimer, this.timeoutTimer, this.killTimer, this.pipeTimer]) clearTimeout(timer);
    const memoryPeakMb = this.memory?.stop() ?? 0;
    this.streams.stdout.end();
    this.streams.stderr.end();
    const completedAt = new Date();
    const exit = this.exit ?? { code: null, signal: null };
    const status: ResultStatus = this.endStatus ?? (exit.code === 0 ? 'Completed' : 'Failed');
    const outcome: JobRunOutcome = {
      result: {
        status,
        exit_code: exit.code,
        stdout: this.streams.stdout.tailText(),
        stderr: this.streams.stderr.tailText(),
        artifacts: [],
        started_at: this.startedAt.toISOString(),
        completed_at: completedAt.toISOString(),
      },
      metrics: {
        duration_ms: Math.max(0, completedAt.getTime() - this.startedAt.getTime()),
        cpu_time_ms: this.cpuTimeMs,
        memory_peak_mb: memoryPeakMb,
      },
    };
    void this.settle(outcome);
  }

  /** Artifacts uploaded, the working directory removed, the job's processes gone: then it is done. */
  private async settle(outcome: JobRunOutcome): Promise<void> {
    const { status } = outcome.result;
    if (this.options.artifacts !== undefined && (status === 'Completed' || status === 'Failed')) {
      try {
        outcome.result.artifacts = await this.options.artifacts(this.cwd);
      } catch (err) {
        this.options.logger?.warn({ err, job_id: this.jobId }, 'uploading artifacts failed');
      }
    }
    if (this.options.keepWorkspace !== true) this.removeWorkspace();
    // Done once nothing of the job is left: a next attempt or a drain may rely on it.
    await (this.options.guard?.ended() ?? Promise.resolve());
    this.resolveDone(outcome);
  }
}

/** A protocol duration in ms. */
export function durationMs(d: Duration): number {
  return d.secs * 1000 + Math.floor(d.nanos / 1_000_000);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
