// The jobs of one agent: decides whether an assignment fits, runs it, turns its end
// into a JobResult kept in the outbox, and answers CancelJob, LogResync and
// JobResultAck. It knows nothing of connections: what it produces goes to `JobEvents`.
import type { Logger } from 'pino';
import type { EnvelopeOf, MessageData, ResultArtifact } from '../protocol/messages.js';
import { cpuCount, diskGb, totalMemoryMb, type Reserved } from './host-facts.js';
import { JobGuards } from './job-guard.js';
import { JobRunner, type JobAssignment, type JobRunOutcome, type LogChunkData, type RunnerTuning } from './job-runner.js';
import type { OutboxEntry, ResultOutbox } from './result-outbox.js';
import { MUSTER, SpanKind, SpanStatusCode, startSpan, traceparentOf, type Span } from '../observability/spans.js';
import { childTraceparent } from './trace-context.js';

export interface JobEvents {
  chunk(chunk: LogChunkData, traceparent: string): void;
  /** A job ended; its result is already in the outbox. */
  result(entry: OutboxEntry): void;
}

export interface JobManagerOptions {
  /** Jobs run in `<workDir>/<job_id>-<attempt>`. */
  workDir: string;
  outbox: ResultOutbox;
  logger: Logger;
  events: JobEvents;
  /** The node id the control plane gave this agent, for JobResult. */
  nodeId(): string;
  /** Settings of every job's runner; each has its default in agent-options.ts. */
  runner?: RunnerTuning;
  /** Run each job in a cgroup of its own where the host allows it. Default true. */
  jobCgroups?: boolean;
  /** Uploads a job's `job.artifacts` from its working directory once its command ended; those stored go in its result. */
  artifacts?(job: JobAssignment, cwd: string): Promise<ResultArtifact[]>;
}

interface Running {
  runner: JobRunner;
  /** The job's context on this agent: its `job run` span's while tracing, else the assignment's. */
  traceparent: string;
  /** `job run`: the job's process, from its start to its exit code (no-op while tracing is off). */
  span: Span;
}

export class JobManager {
  private readonly running = new Map<string, Running>();
  // Ended jobs whose result is not acked yet: a LogResync may still ask for their chunks.
  private readonly ended = new Map<string, Running>();
  private readonly guards: JobGuards;
  private completedCount = 0;
  private failedCount = 0;

  /** Kills what jobs of an earlier run of the agent left running, then is ready for jobs. */
  constructor(private readonly options: JobManagerOptions) {
    this.guards = new JobGuards(options.workDir, options.logger, { cgroups: options.jobCgroups ?? true });
  }

  get activeJobs(): number {
    return this.running.size;
  }

  get completedJobs(): number {
    return this.completedCount;
  }

  get failedJobs(): number {
    return this.failedCount;
  }

  /** Job ids running now, for `resume.running_jobs`. */
  runningJobIds(): string[] {
    return [...new Set([...this.running.values()].map((r) => r.runner.jobId))];
  }

  isRunning(jobId: string, attempt: number): boolean {
    return this.running.has(key(jobId, attempt));
  }

  /** What running jobs take; `exceptJobId`'s attempts left out (a new attempt supersedes them). */
  reserved(exceptJobId?: string): Reserved {
    let cpuCores = 0;
    let memoryMb = 0;
    for (const { runner } of this.running.values()) {
      if (runner.jobId === exceptJobId) continue;
      cpuCores += runner.reserved.cpuCores;
      memoryMb += runner.reserved.memoryMb;
    }
    return { cpuCores, memoryMb };
  }

  /** Why this assignment cannot be taken now, or undefined when it fits. */
  refusal(job: JobAssignment): string | undefined {
    const need = job.job.resource_requirements;
    // An older attempt of the same job still running here was withdrawn by the plane, and
    // start() cancels it: its share must not make the node refuse the attempt that replaces it.
    const taken = this.reserved(job.job_id);
    if (taken.cpuCores + need.cpu_cores > cpuCount()) {
      return `insufficient cpu: ${need.cpu_cores} cores asked, ${Math.max(0, cpuCount() - taken.cpuCores)} free`;
    }
    if (taken.memoryMb + need.memory_mb > totalMemoryMb()) {
      return `insufficient memory: ${need.memory_mb} MB asked, ${Math.max(0, totalMemoryMb() - taken.memoryMb)} free`;
    }
    const disk = diskGb(this.options.workDir);
    if (need.disk_gb > disk) return `insufficient disk: ${need.disk_gb} GB asked, ${disk} free`;
    return undefined;
  }

  /**
   * Starts the job; the caller has already answered JobAccepted. An earlier attempt of the
   * same job still running here was withdrawn by the plane: it is cancelled, and the new
   * attempt starts only once it has exited, so that two attempts never run at once.
   */
  start(message: EnvelopeOf<'JobAssignment'>): void {
    const job = message.data;
    const log = { job_id: job.job_id, attempt: job.attempt, name: job.job.name };
    const earlier = [...this.running.values()].filter((r) => r.runner.jobId === job.job_id && r.runner.attempt !== job.attempt);
    for (const { runner } of earlier) runner.cancel(`superseded by attempt ${job.attempt}`);
    const after = earlier.length === 0 ? undefined : Promise.all(earlier.map((r) => r.runner.done));
    // Under the active `process JobAssignment` span (agent.ts), in the plane's trace of the job.
    const span = startSpan('job run', {
      kind: SpanKind.INTERNAL,
      attributes: { [MUSTER.jobId]: job.job_id, [MUSTER.attempt]: job.attempt, [MUSTER.nodeId]: this.options.nodeId(), 'process.executable.name': executableName(job.job.command) },
    });
    // Its messages (log chunks, the result) carry it: the `job run` span's context, else the assignment's unchanged.
    const traceparent = traceparentOf(span) ?? message.traceparent ?? childTraceparent();
    const runner = new JobRunner({
      assignment: job,
      workDir: this.options.workDir,
      logger: this.options.logger,
      ...this.options.runner,
      guard: this.guards.guard(job.job_id, job.attempt),
      ...(after === undefined ? {} : { after }),
      traceparent,
      ...(this.options.artifacts !== undefined && (job.job.artifacts?.length ?? 0) > 0
        ? { artifacts: (cwd: string) => this.options.artifacts!(job, cwd) }
        : {}),
      onChunk: (chunk) => this.options.events.chunk(chunk, traceparent),
    });
    const entry = { runner, traceparent, span };
    this.running.set(key(job.job_id, job.attempt), entry);
    if (after === undefined) {
      this.options.logger.info(log, 'job started');
    } else {
      const waitingFor = earlier.map((r) => r.runner.attempt);
      this.options.logger.info({ ...log, waiting_for: waitingFor }, 'job accepted; starts once its earlier attempts have exited');
      void after.then(() => {
        if (!runner.isFinished) this.options.logger.info({ ...log, after: waitingFor }, 'job started');
      });
    }
    void runner.done.then((outcome) => this.onDone(entry, outcome));
  }

  cancel(data: MessageData<'CancelJob'>): boolean {
    const entry = this.running.get(key(data.job_id, data.attempt));
    if (entry === undefined) return false;
    entry.runner.cancel(data.reason);
    return true;
  }

  /** Chunks for a LogResync; undefined when this agent no longer has them. */
  resync(data: MessageData<'LogResync'>): LogChunkData[] | undefined {
    const k = key(data.job_id, data.attempt);
    const entry = this.running.get(k) ?? this.ended.get(k);
    return entry?.runner.chunksFrom(data.stream, data.next_seq);
  }

  /** The traceparent to continue for messages about this job. */
  traceOf(jobId: string, attempt: number): string | undefined {
    const k = key(jobId, attempt);
    return (this.running.get(k) ?? this.ended.get(k))?.traceparent;
  }

  /** The control plane stored the result, or said it never can from this node: forget the job. */
  ack(jobId: string, attempt: number): boolean {
    this.ended.delete(key(jobId, attempt));
    return this.options.outbox.ack(jobId, attempt);
  }

  /** Resolves once no job is running. */
  async idle(): Promise<void> {
    while (this.running.size > 0) {
      await Promise.all([...this.running.values()].map((r) => r.runner.done));
      // Let the done handlers move the jobs out of `running`.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** SIGKILL to every job, then waits for them to end. */
  async killAll(): Promise<void> {
    for (const { runner } of this.running.values()) runner.kill();
    await this.idle();
  }

  private onDone(entry: Running, outcome: JobRunOutcome): void {
    const { runner } = entry;
    const k = key(runner.jobId, runner.attempt);
    this.running.delete(k);
    this.ended.set(k, entry);
    // Its exit code (null when it was killed by a signal or never started) and how the job ended.
    if (outcome.result.exit_code !== null) entry.span.setAttribute('process.exit.code', outcome.result.exit_code);
    entry.span.setAttribute(MUSTER.outcome, outcome.result.status);
    if (outcome.result.status !== 'Completed') entry.span.setStatus({ code: SpanStatusCode.ERROR, message: `job ${outcome.result.status}` });
    entry.span.end();
    if (outcome.result.status === 'Completed') this.completedCount += 1;
    else if (outcome.result.status !== 'Cancelled') this.failedCount += 1;
    this.options.logger.info(
      { job_id: runner.jobId, attempt: runner.attempt, status: outcome.result.status, exit_code: outcome.result.exit_code },
      'job ended',
    );
    const result: OutboxEntry = {
      result: {
        job_id: runner.jobId,
        attempt: runner.attempt,
        node_id: this.options.nodeId(),
        result: outcome.result,
        metrics: outcome.metrics,
      },
      traceparent: entry.traceparent,
    };
    this.options.outbox.add(result);
    this.options.events.result(result);
  }
}

/** The program's file name only: its path and arguments may hold what a trace should not. */
function executableName(command: readonly string[]): string {
  const program = command[0] ?? '';
  return program.slice(program.lastIndexOf('/') + 1).slice(0, 128);
}

function key(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}
