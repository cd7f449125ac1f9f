// An in-memory PlaneApi for the admin API and CLI tests: it stores what is submitted and lets
// the test play the part of the scheduler and the nodes (append logs, finish jobs).
// The real plane is tested end to end elsewhere.
import { randomUUID } from 'node:crypto';
import type { JobOutcome, LogStream } from '../../../protocol/messages.js';
import { nextJobState } from '../../../actors/job-machine.js';
import type { AttemptRecord, JobListFilter, JobRecord, JobState, LogRecord, NewJob } from '../../../supervisor/store/job-store.js';
import type { PlaneApi, RetryOutcome } from '../../../supervisor/admin/plane-api.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

export class FakePlaneApi implements PlaneApi {
  readonly defaults = { maxAttempts: 4, jobTimeoutMs: 90_500, maxFrameBytes: 1_048_576 };
  readonly jobs = new Map<string, JobRecord>();
  readonly submitted: NewJob[] = [];
  readonly drained: string[] = [];
  readonly undrained: string[] = [];
  readonly nodes: NodeView[] = [];
  ready = true;
  /** What `storeFailure()` reports; set it with `ready = false` to play a failing store. */
  failure: string | undefined;
  /** How often jobLogs was called: shows whether a follow still polls. */
  logPolls = 0;
  /** Log follows watching each job (`watchJob`), as the bus's subscribers. */
  readonly watchers = new Map<string, Set<() => void>>();
  /** Called after each submission, e.g. to script a run. */
  onSubmit: ((record: JobRecord) => void) | undefined;
  #logs: Array<LogRecord & { job_id: string }> = [];
  #cursor = 0;

  async submitJob(job: NewJob): Promise<JobRecord> {
    this.submitted.push(job);
    const record: JobRecord = {
      ...job,
      job_id: randomUUID(),
      state: 'Queued',
      attempt: 1,
      cancel_requested: false,
      created_at: new Date().toISOString(),
      seq: this.jobs.size + 1,
    };
    this.jobs.set(record.job_id, record);
    this.onSubmit?.(record);
    return record;
  }

  async getJob(jobId: string): Promise<JobRecord | undefined> {
    const record = this.jobs.get(jobId);
    return record === undefined ? undefined : { ...record };
  }

  async jobLogs(jobId: string, afterCursor?: number): Promise<LogRecord[] | undefined> {
    this.logPolls += 1;
    if (!this.jobs.has(jobId)) return undefined;
    return this.#logs
      .filter((l) => l.job_id === jobId && l.cursor > (afterCursor ?? 0))
      .map(({ job_id: _jobId, ...rest }) => rest);
  }

  watchJob(jobId: string, wake: () => void): () => void {
    const set = this.watchers.get(jobId) ?? new Set();
    set.add(wake);
    this.watchers.set(jobId, set);
    return () => {
      set.delete(wake);
      if (set.size === 0) {
        this.watchers.delete(jobId);
        for (const resolve of this.#unwatched.get(jobId)?.splice(0) ?? []) resolve();
      }
    };
  }

  /** Resolves once nothing watches `jobId` any more (its last follow stopped watching). */
  unwatched(jobId: string): Promise<void> {
    return new Promise((resolve) => {
      const waiting = this.#unwatched.get(jobId) ?? [];
      waiting.push(resolve);
      this.#unwatched.set(jobId, waiting);
    });
  }

  #unwatched = new Map<string, Array<() => void>>();

  async cancelJob(jobId: string): Promise<JobRecord | undefined> {
    const record = this.jobs.get(jobId);
    if (record === undefined) return undefined;
    record.cancel_requested = true;
    if (record.state === 'Queued') this.end(jobId, 'Cancelled', { reason: 'cancelled before it ran' });
    return { ...record };
  }

  listNodes(): NodeView[] {
    return this.nodes;
  }

  getNode(nodeId: string): NodeView | undefined {
    return this.nodes.find((n) => n.node_id === nodeId);
  }

  undrainNode(nodeId: string): 'requested' | 'not_connected' | 'not_draining' {
    const node = this.nodes.find((n) => n.node_id === nodeId && n.state !== 'dead');
    if (node === undefined) return 'not_connected';
    if (node.state !== 'draining') return 'not_draining';
    this.undrained.push(nodeId);
    return 'requested';
  }

  drainNode(nodeId: string): boolean {
    if (!this.nodes.some((n) => n.node_id === nodeId)) return false;
    this.drained.push(nodeId);
    return true;
  }

  async stats(): Promise<Record<string, number>> {
    return { active_connections: this.nodes.length, total_messages_sent: 7, total_messages_received: 9 };
  }

  async metrics(): Promise<string> {
    return '# TYPE muster_jobs_total counter\nmuster_jobs_total 1\n';
  }

  isReady(): boolean {
    return this.ready;
  }

  async submitJobs(jobs: readonly NewJob[]): Promise<JobRecord[]> {
    const records: JobRecord[] = [];
    for (const job of jobs) records.push(await this.submitJob(job));
    return records;
  }

  async listJobs(filter: JobListFilter, limit: number): Promise<JobRecord[]> {
    return [...this.jobs.values()]
      .filter((j) => filter.state === undefined || j.state === filter.state)
      .filter((j) => filter.node_id === undefined || j.node_id === filter.node_id)
      .filter((j) => filter.priority === undefined || j.priority === filter.priority)
      .filter((j) => filter.before_seq === undefined || j.seq < filter.before_seq)
      .sort((a, b) => b.seq - a.seq)
      .slice(0, limit)
      .map((j) => ({ ...j }));
  }

  /** Attempts the test recorded with `attempted`. */
  readonly attemptsOf = new Map<string, AttemptRecord[]>();

  async jobAttempts(jobId: string): Promise<AttemptRecord[] | undefined> {
    return this.jobs.has(jobId) ? (this.attemptsOf.get(jobId) ?? []) : undefined;
  }

  async retryJob(jobId: string): Promise<RetryOutcome> {
    const record = this.jobs.get(jobId);
    if (record === undefined) return { status: 'not_found' };
    const next = nextJobState(record, { type: 'retry' });
    if (next === undefined) return { status: 'refused', record: { ...record } };
    Object.assign(record, next);
    delete record.result;
    delete record.reason;
    delete record.node_id;
    return { status: 'retried', record: { ...record } };
  }

  storeFailure(): string | undefined {
    return this.failure;
  }

  /** Test side: a node sent a log chunk for the job's current attempt. */
  appendLog(jobId: string, stream: LogStream, data: string): LogRecord {
    const record = this.#job(jobId);
    record.state = 'Running';
    const seq = this.#logs.filter((l) => l.job_id === jobId && l.stream === stream).length;
    const chunk = { job_id: jobId, attempt: record.attempt, stream, seq, data, cursor: ++this.#cursor };
    this.#logs.push(chunk);
    this.#notify(jobId);
    const { job_id: _jobId, ...rest } = chunk;
    return rest;
  }

  /** Test side: the job ends, with a result when `exitCode` is given. */
  end(jobId: string, state: JobState, o: { exitCode?: number; reason?: string } = {}): void {
    const record = this.#job(jobId);
    record.state = state;
    if (o.reason !== undefined) record.reason = o.reason;
    if (o.exitCode !== undefined) record.result = outcome(state, o.exitCode);
    this.#notify(jobId);
  }

  /** What the plane's bus does after a job event: every watcher of the job is woken. */
  #notify(jobId: string): void {
    for (const wake of this.watchers.get(jobId) ?? []) wake();
  }

  #job(jobId: string): JobRecord {
    const record = this.jobs.get(jobId);
    if (record === undefined) throw new Error(`no job ${jobId}`);
    return record;
  }
}

function outcome(state: JobState, exitCode: number): JobOutcome {
  const now = new Date().toISOString();
  return {
    status: state === 'Completed' ? 'Completed' : 'Failed',
    exit_code: exitCode,
    stdout: '',
    stderr: '',
    artifacts: [],
    started_at: now,
    completed_at: now,
  };
}
