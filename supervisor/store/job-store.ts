// The JobStore seam: where jobs, their attempts, results and log chunks live.
// The embedded plane uses SQLite (sqlite-job-store.ts), a cluster NATS JetStream
// (cluster/jetstream-job-store.ts): both pass one contract suite (test/supervisor/store/job-store-contract.ts).
import type { JobLifecycleState } from '../../actors/job-machine.js';
import type {
  ExecutionContext,
  JobMetrics,
  JobOutcome,
  JobSpec,
  LogStream,
  Priority,
  ResultStatus,
} from '../../protocol/messages.js';

/** A job's state: the job machine's (actors/job-machine.ts), which every store follows. */
export type JobState = JobLifecycleState;

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  'Completed',
  'Failed',
  'Cancelled',
  'TimedOut',
  'DeadLettered',
]);

/** Which nodes may run a job (PROTOCOL.md section 7, `POST /v1/jobs`). */
export interface JobSelector {
  runner_type?: string;
  job_type?: string;
  tags?: Record<string, string>;
}

export interface NewJob {
  job: JobSpec;
  execution_context: ExecutionContext;
  priority: Priority;
  selector: JobSelector;
  /** RFC 3339; the job must be finished by then or it is `TimedOut`. */
  deadline?: string;
  max_attempts: number;
  /**
   * The W3C trace context the job was submitted in (observability/spans.ts): every later span
   * of the job (queueing, each attempt's assignment, its result) continues it, on any replica.
   * Absent when the plane does not trace. At most MAX_TRACEPARENT_CHARS.
   */
  traceparent?: string;
}

/** A version 00 `traceparent` is 55 characters; later versions may add some (as protocol/validator.ts allows). */
export const MAX_TRACEPARENT_CHARS = 512;

export interface JobRecord extends NewJob {
  job_id: string;
  state: JobState;
  /** The current attempt, from 1. */
  attempt: number;
  /**
   * The node of the current attempt while `Assigned` or `Running`, and of the last attempt
   * once it ended the job (`Completed`, `Failed`, `Cancelled`, `TimedOut`); none when queued
   * or dead-lettered.
   */
  node_id?: string;
  /** Set by `POST /v1/jobs/{id}/cancel`: a requeue then ends the job as `Cancelled`. */
  cancel_requested: boolean;
  /** Why the job ended where it did not end with a result (dead letter, timeout, cancel). */
  reason?: string;
  result?: JobOutcome;
  metrics?: JobMetrics;
  created_at: string;
  /** When the current attempt was assigned / accepted (RFC 3339). */
  assigned_at?: string;
  started_at?: string;
  /** Submission order, for FIFO within a priority. */
  seq: number;
}

/** One attempt of a job: which node had it, and how it ended. */
export interface AttemptRecord {
  job_id: string;
  attempt: number;
  node_id: string;
  assigned_at: string;
  /** When the node answered `JobAccepted`. */
  accepted_at?: string;
  ended_at?: string;
  /** The result's status, `Cancelled`/`TimedOut` from `finish`, or `Withdrawn` (requeue). */
  outcome?: string;
  reason?: string;
}

export interface LogRecord {
  attempt: number;
  stream: LogStream;
  seq: number;
  data: string;
  /** Store-wide position, for resuming a follow (`after`). */
  cursor: number;
}

export type StoreResultOutcome = 'stored' | 'duplicate' | 'stale';

export type AppendLogOutcome =
  | { status: 'stored' }
  | { status: 'duplicate' }
  /** A chunk arrived ahead of `nextSeq`: the node must resend from there (`LogResync`). */
  | { status: 'gap'; nextSeq: number };

/**
 * The fencing token every job write carries: the embedded plane passes one constant
 * (`EMBEDDED_OWNER` in open-stores.ts), a cluster replica the revision of the node's entry in
 * `muster-owners` when it claimed the node. A job keeps the token of its current attempt
 * (owner-fence.ts): `assign` sets it from its writer; a write for that attempt (`markRunning`,
 * `requeue`, `storeResult`, `finish`, `appendLog`) with a lower token is refused (rejects with a
 * MusterError, changing nothing), so a replica that lost the node cannot overwrite the one that
 * took it over; a higher token is accepted and becomes the attempt's (a takeover). Writes that
 * move no node's attempt (`submit`, `submitMany`, `requestCancel`, `retry`, `finish` of a queued
 * job) are not fenced: any replica's API may make them.
 */
export type OwnerToken = number;

/** Which jobs `listJobs` returns: every filter given must hold. */
export interface JobListFilter {
  state?: JobState;
  /** The node of the current (or last) attempt. */
  node_id?: string;
  priority?: Priority;
  /** Only jobs submitted before the one with this `seq` (exclusive): the page after it. */
  before_seq?: number;
}

/**
 * All methods are atomic. Transitions are compare-and-set on `attempt`, so a stale caller changes
 * nothing; every write carries an `OwnerToken`, so a stale writer of an attempt changes nothing either.
 * A write's promise resolves once the write is durable.
 */
export interface JobStore {
  submit(job: NewJob, owner: OwnerToken): Promise<JobRecord>;
  /**
   * A record's `execution_context.secrets` keeps each secret's name with `***` for its value;
   * the values are kept encrypted and read only here, to send a `JobAssignment`.
   */
  get(jobId: string): Promise<JobRecord | undefined>;
  /**
   * The record as this store last saw it, without a read, when it holds one in memory (the
   * JetStream store's index of jobs in play); absent or undefined: ask `get`. A hint, possibly
   * behind: only for what a compare-and-set checks again (the scheduler's queue).
   */
  peek?(jobId: string): JobRecord | undefined;
  /** The job's secret values, opened; undefined for an unknown job. Only for a `JobAssignment`, and for the plane's masking of that job's output. */
  secrets(jobId: string): Promise<Record<string, string> | undefined>;
  /** Queued jobs, Critical first, then High, Normal, Low; FIFO (`seq`) within a priority. */
  queued(limit?: number): Promise<JobRecord[]>;
  /** Jobs `Assigned` or `Running`, for timers and for recovery after a restart. */
  active(): Promise<JobRecord[]>;
  /** `Queued` → `Assigned` to `nodeId`; false when the job is no longer queued at `attempt`. */
  assign(jobId: string, attempt: number, nodeId: string, owner: OwnerToken): Promise<boolean>;
  /**
   * A new owner of the node raises the fence of `attempt` to `owner` before it acts on the job
   * (docs/cluster-correctness.md, point 3): true when the job is `Assigned` or `Running` at
   * `attempt` and carries `owner` now; false when stale (nothing changes); rejects with a
   * MusterError when the attempt already carries a higher token.
   */
  takeOver(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean>;
  /** `Assigned` → `Running` when the node accepted `attempt`; false when stale. */
  markRunning(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean>;
  /**
   * Withdraws `attempt` (rejected, accept timeout, node dead): back to `Queued` with
   * `attempt + 1`, or `DeadLettered` when `max_attempts` are used up, or `Cancelled`
   * when a cancel was requested. Returns the record afterwards, or undefined when stale.
   */
  requeue(jobId: string, attempt: number, reason: string, owner: OwnerToken): Promise<JobRecord | undefined>;
  /**
   * Stores the result of `attempt` once. `duplicate`: that attempt's result is already stored.
   * `stale`: `attempt` is not the current one (or the job has ended otherwise); nothing changes.
   * A stored result sets the state from `result.status`.
   */
  storeResult(
    jobId: string,
    attempt: number,
    result: JobOutcome,
    metrics: JobMetrics,
    owner: OwnerToken,
  ): Promise<StoreResultOutcome>;
  /** Ends a job without a result (`Cancelled` or `TimedOut` decided by the plane); false when stale or ended. */
  finish(
    jobId: string,
    attempt: number,
    state: Extract<ResultStatus, 'Cancelled' | 'TimedOut'>,
    reason: string,
    owner: OwnerToken,
  ): Promise<boolean>;
  /** Marks a cancel request; returns the record afterwards. A queued job is `Cancelled` at once. */
  requestCancel(jobId: string, owner: OwnerToken): Promise<JobRecord | undefined>;
  appendLog(
    jobId: string,
    attempt: number,
    stream: LogStream,
    seq: number,
    data: string,
    owner: OwnerToken,
  ): Promise<AppendLogOutcome>;
  /** Log chunks in arrival order, all attempts, after `cursor` (exclusive). */
  logs(jobId: string, afterCursor?: number): Promise<LogRecord[]>;
  /** Every attempt of a job, oldest first: which node had each, and how it ended. */
  attempts(jobId: string): Promise<AttemptRecord[]>;
  /** Counts by state, for stats and metrics. */
  counts(): Promise<Record<JobState, number>>;
  /**
   * What is wrong with the storage, from a write that failed on it (disk full, I/O error) until
   * a write succeeds again; undefined while writes succeed. `/readyz` reports it.
   */
  failure(): string | undefined;
  close(): Promise<void>;
  /** Stores every job as `Queued`, in order, in one transaction: all or none. Records in the same order. */
  submitMany(jobs: readonly NewJob[], owner: OwnerToken): Promise<JobRecord[]>;
  /**
   * Up to `limit` jobs matching `filter`, newest first (`seq` descending). Paging by
   * `before_seq` (the last `seq` of a page) gives every job once, whatever is submitted meanwhile.
   */
  listJobs(filter: JobListFilter, limit: number): Promise<JobRecord[]>;
  /**
   * `POST /v1/jobs/{id}/retry`: a job that ended `Failed`, `TimedOut`, `Cancelled` or
   * `DeadLettered` at `attempt` is `Queued` again as `attempt + 1`, its cancel request
   * forgotten. Undefined when the job is not at `attempt` in one of those states.
   */
  retry(jobId: string, attempt: number, owner: OwnerToken): Promise<JobRecord | undefined>;
}
