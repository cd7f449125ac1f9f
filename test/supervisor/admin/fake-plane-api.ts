// An in-memory PlaneApi for the admin API and CLI tests: it stores what is submitted and lets
// the test play the part of the scheduler and the nodes (append logs, finish jobs).
// The real plane is tested end to end elsewhere.
import { randomUUID } from 'node:crypto';
import type { JobOutcome, LogStream } from '../../../protocol/messages.js';
import type { JobRecord, JobState, LogRecord, NewJob } from '../../../supervisor/store/job-store.js';
import type { PlaneApi } from '../../../supervisor/admin/plane-api.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

export class FakePlaneApi implements PlaneApi {
  readonly defaults = { maxAttempts: 4, jobTimeoutMs: 90_500, maxFrameBytes: 1_048_576 };
  readonly jobs = new Map<string, JobRecord>();
  readonly submitted: NewJob[] = [];
  readonly drained: string[] = [];
  readonly nodes: NodeView[] = [];
  ready = true;
  /** How often jobLogs was called: shows whether a follow still polls. */
  logPolls = 0;
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

  /** Test side: a node sent a log chunk for the job's current attempt. */
  appendLog(jobId: string, stream: LogStream, data: string): LogRecord {
    const record = this.#job(jobId);
    record.state = 'Running';
    const seq = this.#logs.filter((l) => l.job_id === jobId && l.stream === stream).length;
    const chunk = { job_id: jobId, attempt: record.attempt, stream, seq, data, cursor: ++this.#cursor };
    this.#logs.push(chunk);
    const { job_id: _jobId, ...rest } = chunk;
    return rest;
  }

  /** Test side: the job ends, with a result when `exitCode` is given. */
  end(jobId: string, state: JobState, o: { exitCode?: number; reason?: string } = {}): void {
    const record = this.#job(jobId);
    record.state = state;
    if (o.reason !== undefined) record.reason = o.reason;
    if (o.exitCode !== undefined) record.result = outcome(state, o.exitCode);
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
