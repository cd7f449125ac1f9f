// The embedded job store: jobs, attempts, results and log chunks in the plane's SQLite file (better-sqlite3).
// better-sqlite3 is synchronous, so each write runs whole inside one transaction (a savepoint of
// the turn's group commit, group-commit.ts) and is atomic by construction; its promise resolves
// once that commit is on disk. Reads answer at once from what is committed.
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { nextJobState, type JobEvent, type JobLifecycle } from '../../actors/job-machine.js';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import type { JobMetrics, JobOutcome, LogStream, ResultStatus } from '../../protocol/messages.js';
import type { Logger } from 'pino';
import { GroupCommit } from './group-commit.js';
import { NO_OWNER, fenceOf } from './owner-fence.js';
import { SecretBox } from './secret-box.js';
import { WalCheckpointer } from './wal-checkpointer.js';
import {
  JOB_SELECT,
  LIFECYCLE_SELECT,
  rowToAttempt,
  rowToLifecycle,
  rowToLog,
  rowToRecord,
  toJobInsert,
  type AttemptRow,
  type JobInsert,
  type JobRow,
  type LifecycleRow,
  type LogRow,
} from './job-row.js';
import type {
  AppendLogOutcome,
  AttemptRecord,
  JobListFilter,
  JobRecord,
  JobState,
  JobStore,
  LogRecord,
  NewJob,
  OwnerToken,
  StoreResultOutcome,
} from './job-store.js';
import { SQLITE_DEFAULTS, openDatabase, walPathOf, type SqliteOptions } from './sqlite-database.js';

const ALL_STATES: readonly JobState[] = ['Queued', 'Assigned', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered'];

/** A move the job machine allowed: the job as this write read it, and as it leaves it. */
interface Move {
  from: JobLifecycle;
  next: JobLifecycle;
}

/**
 * Where `event` takes the job `row` (read in the write's transaction), or undefined when the job
 * is unknown, is not at `attempt` (the compare-and-set), or the job machine forbids the move.
 * The store decides no legality of its own: it cannot allow what the machine forbids.
 */
function decide(row: LifecycleRow | undefined, attempt: number, event: JobEvent): Move | undefined {
  if (row === undefined || row.attempt !== attempt) return undefined;
  const from = rowToLifecycle(row);
  const next = nextJobState(from, event);
  return next === undefined ? undefined : { from, next };
}

const now = (): string => new Date().toISOString();

type Db = Database.Database;

function prepareStatements(db: Db) {
  return {
    insertJob: db.prepare<[JobInsert]>(`
      INSERT INTO jobs (job_id, seq, state, attempt, priority, priority_rank, job, execution_context,
                        selector, deadline, max_attempts, traceparent, owner, sealed_secrets, created_at, updated_at)
      VALUES (@job_id, @seq, 'Queued', 1, @priority, @priority_rank,
              @job, @execution_context, @selector, @deadline, @max_attempts, @traceparent, @owner, @sealed_secrets, @now, @now)`),
    // Read inside the write's transaction, under the write lock: no other writer takes the next seq.
    lastSeq: db.prepare<[], number>(`SELECT COALESCE(MAX(seq), 0) FROM jobs`).pluck(),
    sealedSecrets: db.prepare<[string], { sealed_secrets: string | null }>(`SELECT sealed_secrets FROM jobs WHERE job_id = ?`),
    lifecycle: db.prepare<[string], LifecycleRow>(LIFECYCLE_SELECT),
    setOwner: db.prepare<[number, string]>(`UPDATE jobs SET owner = ? WHERE job_id = ?`),
    getJob: db.prepare<[string], JobRow>(`${JOB_SELECT} WHERE j.job_id = ?`),
    queued: db.prepare<[number], JobRow>(
      `${JOB_SELECT} WHERE j.state = 'Queued' ORDER BY j.priority_rank DESC, j.seq LIMIT ?`,
    ),
    active: db.prepare<[], JobRow>(
      `${JOB_SELECT} WHERE j.state IN ('Assigned', 'Running') ORDER BY j.priority_rank DESC, j.seq`,
    ),
    // Each UPDATE below writes the machine's answer, and only over the row it was asked about.
    // The new attempt takes its writer's owner token in the same row write.
    assign: db.prepare<[{ job_id: string; attempt: number; from: JobState; state: JobState; node_id: string; owner: number; now: string }]>(`
      UPDATE jobs SET state = @state, node_id = @node_id, owner = @owner, assigned_at = @now, started_at = NULL, updated_at = @now
      WHERE job_id = @job_id AND attempt = @attempt AND state = @from`),
    insertAttempt: db.prepare<[{ job_id: string; attempt: number; node_id: string; now: string }]>(`
      INSERT INTO attempts (job_id, attempt, node_id, assigned_at) VALUES (@job_id, @attempt, @node_id, @now)`),
    markRunning: db.prepare<[{ job_id: string; attempt: number; from: JobState; state: JobState; now: string }]>(`
      UPDATE jobs SET state = @state, started_at = @now, updated_at = @now
      WHERE job_id = @job_id AND attempt = @attempt AND state = @from`),
    acceptAttempt: db.prepare<[{ job_id: string; attempt: number; now: string }]>(`
      UPDATE attempts SET accepted_at = @now WHERE job_id = @job_id AND attempt = @attempt`),
    endAttempt: db.prepare<[{ job_id: string; attempt: number; outcome: string; reason: string | null; now: string }]>(`
      UPDATE attempts SET ended_at = @now, outcome = @outcome, reason = @reason
      WHERE job_id = @job_id AND attempt = @attempt AND ended_at IS NULL`),
    // One transition for every other move; a new attempt forgets the old one's node and
    // timestamps. An attempt that ends the job keeps its node, so operators see where it ran.
    // `keep_reason` leaves the reason as it is (a cancel that only marks the request).
    transition: db.prepare<[Transition]>(`
      UPDATE jobs SET state = @state, attempt = @next_attempt, cancel_requested = @cancel_requested, updated_at = @now,
        reason = CASE WHEN @keep_reason = 1 THEN reason ELSE @reason END,
        node_id = CASE WHEN @state IN ('Queued', 'DeadLettered') THEN NULL ELSE node_id END,
        assigned_at = CASE WHEN @state = 'Queued' THEN NULL ELSE assigned_at END,
        started_at = CASE WHEN @state = 'Queued' THEN NULL ELSE started_at END,
        owner = CASE WHEN @state = 'Queued' THEN ${NO_OWNER} ELSE owner END
      WHERE job_id = @job_id AND attempt = @attempt AND state = @from`),
    hasResult: db.prepare<[string, number], number>(`SELECT 1 FROM results WHERE job_id = ? AND attempt = ?`).pluck(),
    insertResult: db.prepare<[{ job_id: string; attempt: number; result: string; metrics: string; now: string }]>(`
      INSERT INTO results (job_id, attempt, result, metrics, stored_at) VALUES (@job_id, @attempt, @result, @metrics, @now)`),
    hasLog: db
      .prepare<[string, number, string, number], number>(
        `SELECT 1 FROM log_chunks WHERE job_id = ? AND attempt = ? AND stream = ? AND seq = ?`,
      )
      .pluck(),
    maxLogSeq: db
      .prepare<[string, number, string], number | null>(
        `SELECT MAX(seq) FROM log_chunks WHERE job_id = ? AND attempt = ? AND stream = ?`,
      )
      .pluck(),
    insertLog: db.prepare<[string, number, string, number, string]>(
      `INSERT INTO log_chunks (job_id, attempt, stream, seq, data) VALUES (?, ?, ?, ?, ?)`,
    ),
    logs: db.prepare<[string, number], LogRow>(
      `SELECT cursor, attempt, stream, seq, data FROM log_chunks WHERE job_id = ? AND cursor > ? ORDER BY cursor`,
    ),
    counts: db.prepare<[], { state: JobState; n: number }>(`SELECT state, COUNT(*) AS n FROM jobs GROUP BY state`),
    attempts: db.prepare<[string], AttemptRow>(`SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt`),
  };
}

/** The named parameters of `transition`: the move, from the row it was decided on. */
interface Transition {
  job_id: string;
  attempt: number;
  from: JobState;
  state: JobState;
  next_attempt: number;
  cancel_requested: number;
  reason: string | null;
  keep_reason: number;
  now: string;
}

function transitionOf(jobId: string, { from, next }: Move, reason: string | null | 'keep', at: string): Transition {
  return {
    job_id: jobId,
    attempt: from.attempt,
    from: from.state,
    state: next.state,
    next_attempt: next.attempt,
    cancel_requested: next.cancel_requested ? 1 : 0,
    reason: reason === 'keep' ? null : reason,
    keep_reason: reason === 'keep' ? 1 : 0,
    now: at,
  };
}

export class SqliteJobStore implements JobStore {
  readonly #db: Db;
  readonly #sql: ReturnType<typeof prepareStatements>;
  readonly #writes: GroupCommit;

  readonly #checkpointer: WalCheckpointer | undefined;
  #failure: string | undefined;
  readonly #box: SecretBox;

  private constructor(db: Db, path: string, options: SqliteOptions, logger: Pick<Logger, 'warn'>) {
    this.#db = db;
    this.#sql = prepareStatements(db);
    this.#box = SecretBox.forStore(path);
    const walPath = walPathOf(path);
    const onHealth = (failure: Error | undefined): void => {
      this.#failure = failure === undefined ? undefined : describeFailure(failure, path);
    };
    this.#writes = new GroupCommit(db, walPath === undefined ? { ...options, onHealth } : { ...options, onHealth, walPath });
    if (walPath !== undefined && options.checkpointIntervalMs > 0) {
      this.#checkpointer = new WalCheckpointer(path, options.checkpointIntervalMs, logger);
    }
  }

  /** Opens (creating if missing) the store at `path`; `:memory:` gives a throwaway store. */
  static open(path: string, options: SqliteOptions = SQLITE_DEFAULTS, logger: Pick<Logger, 'warn'> = console): SqliteJobStore {
    return new SqliteJobStore(openDatabase(path, options), path, options, logger);
  }

  failure(): string | undefined {
    return this.#failure;
  }

  /** Transactions committed so far (each holds the writes of one event-loop turn): for tests. */
  get commits(): number {
    return this.#writes.commits;
  }

  /** WAL fsyncs completed so far (a write is answered only after one that follows its commit): for tests. */
  get syncs(): number {
    return this.#writes.syncs;
  }

  // Not fenced: a queued job has no attempt on a node yet (the writer's token is not kept).
  submit(job: NewJob, _owner: OwnerToken): Promise<JobRecord> {
    return this.#tx(() => {
      const { insert, record } = toJobInsert(randomUUID(), job, NO_OWNER, now(), this.#sql.lastSeq.get()! + 1, this.#box);
      this.#sql.insertJob.run(insert);
      return record;
    });
  }

  secrets(jobId: string): Promise<Record<string, string> | undefined> {
    return this.#run(() => {
      const row = this.#sql.sealedSecrets.get(jobId);
      if (row === undefined) return undefined;
      return row.sealed_secrets === null ? {} : (JSON.parse(this.#box.open(row.sealed_secrets, jobId)) as Record<string, string>);
    });
  }

  get(jobId: string): Promise<JobRecord | undefined> {
    return this.#run(() => this.#get(jobId));
  }

  queued(limit?: number): Promise<JobRecord[]> {
    // SQLite reads a negative LIMIT as "no limit".
    return this.#run(() => this.#sql.queued.all(limit ?? -1).map(rowToRecord));
  }

  active(): Promise<JobRecord[]> {
    return this.#run(() => this.#sql.active.all().map(rowToRecord));
  }

  assign(jobId: string, attempt: number, nodeId: string, owner: OwnerToken): Promise<boolean> {
    // A new attempt takes its writer's token, whatever the last attempt's was: tokens of
    // different nodes do not compare, and the compare-and-set on Queued-at-attempt lets one win.
    return this.#unfenced(jobId, (row) => {
      const move = decide(row, attempt, { type: 'assign' });
      if (move === undefined) return false;
      const params = { job_id: jobId, attempt, from: move.from.state, state: move.next.state, node_id: nodeId, owner, now: now() };
      if (this.#sql.assign.run(params).changes === 0) return false;
      this.#sql.insertAttempt.run(params);
      return true;
    });
  }

  takeOver(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean> {
    // The fence is the whole write: #fenced raises the token when it is higher.
    return this.#fenced(jobId, attempt, owner, (row) => row !== undefined && row.attempt === attempt && isPlaced(row.state));
  }

  markRunning(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean> {
    return this.#fenced(jobId, attempt, owner, (row) => {
      const move = decide(row, attempt, { type: 'accept' });
      if (move === undefined) return false;
      const params = { job_id: jobId, attempt, from: move.from.state, state: move.next.state, now: now() };
      if (this.#sql.markRunning.run(params).changes === 0) return false;
      this.#sql.acceptAttempt.run(params);
      return true;
    });
  }

  requeue(jobId: string, attempt: number, reason: string, owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#fenced(jobId, attempt, owner, (row) => {
      // Back to the queue as the next attempt, dead-lettered or cancelled: the machine says which.
      const move = decide(row, attempt, { type: 'withdraw' });
      if (move === undefined) return undefined;
      const at = now();
      if (this.#sql.transition.run(transitionOf(jobId, move, reason, at)).changes === 0) return undefined;
      this.#sql.endAttempt.run({ job_id: jobId, attempt, outcome: 'Withdrawn', reason, now: at });
      return this.#get(jobId);
    });
  }

  storeResult(
    jobId: string,
    attempt: number,
    result: JobOutcome,
    metrics: JobMetrics,
    owner: OwnerToken,
  ): Promise<StoreResultOutcome> {
    return this.#fenced(jobId, attempt, owner, (row): StoreResultOutcome => {
      const move = decide(row, attempt, { type: 'result', status: result.status });
      // A stored result ended its attempt, so a move the machine allows has none yet: only a
      // refused one asks whether it is a repeat.
      if (move === undefined) return this.#sql.hasResult.get(jobId, attempt) !== undefined ? 'duplicate' : 'stale';
      const at = now();
      // A result explains the end by itself: drop the reason an earlier requeue left.
      if (this.#sql.transition.run(transitionOf(jobId, move, null, at)).changes === 0) return 'stale';
      const params = { job_id: jobId, attempt, now: at };
      this.#sql.insertResult.run({ ...params, result: JSON.stringify(result), metrics: JSON.stringify(metrics) });
      this.#sql.endAttempt.run({ ...params, outcome: result.status, reason: null });
      return 'stored';
    });
  }

  finish(
    jobId: string,
    attempt: number,
    state: Extract<ResultStatus, 'Cancelled' | 'TimedOut'>,
    reason: string,
    owner: OwnerToken,
  ): Promise<boolean> {
    // Ending a queued job on its deadline moves no node's attempt: any writer may.
    return this.#fenced(jobId, attempt, owner, (row) => {
      const move = decide(row, attempt, { type: 'finish', state });
      if (move === undefined) return false;
      const at = now();
      if (this.#sql.transition.run(transitionOf(jobId, move, reason, at)).changes === 0) return false;
      this.#sql.endAttempt.run({ job_id: jobId, attempt, outcome: state, reason, now: at });
      return true;
    });
  }

  requestCancel(jobId: string, _owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#unfenced(jobId, (row) => {
      if (row === undefined) return undefined;
      // Queued: Cancelled at once. Assigned or Running: only marked; the plane sends CancelJob and
      // the node's result (or a requeue) ends the job. An ended job is left as it was.
      const move = decide(row, row.attempt, { type: 'cancel' });
      if (move !== undefined) {
        const reason = move.next.state === move.from.state ? 'keep' : 'cancel requested';
        this.#sql.transition.run(transitionOf(jobId, move, reason, now()));
      }
      return this.#get(jobId);
    });
  }

  appendLog(
    jobId: string,
    attempt: number,
    stream: LogStream,
    seq: number,
    data: string,
    owner: OwnerToken,
  ): Promise<AppendLogOutcome> {
    return this.#fenced(jobId, attempt, owner, (): AppendLogOutcome => {
      if (this.#sql.hasLog.get(jobId, attempt, stream, seq) !== undefined) return { status: 'duplicate' };
      const max = this.#sql.maxLogSeq.get(jobId, attempt, stream) ?? null;
      const nextSeq = max === null ? 0 : max + 1;
      if (seq > nextSeq) return { status: 'gap', nextSeq };
      this.#sql.insertLog.run(jobId, attempt, stream, seq, data);
      return { status: 'stored' };
    });
  }

  logs(jobId: string, afterCursor?: number): Promise<LogRecord[]> {
    return this.#run(() => this.#sql.logs.all(jobId, afterCursor ?? 0).map(rowToLog));
  }

  counts(): Promise<Record<JobState, number>> {
    return this.#run(() => {
      const counts = Object.fromEntries(ALL_STATES.map((s) => [s, 0])) as Record<JobState, number>;
      for (const { state, n } of this.#sql.counts.all()) counts[state] = n;
      return counts;
    });
  }

  /** Every attempt of a job, oldest first: where it ran and how each attempt ended. Not part of JobStore. */
  attempts(jobId: string): Promise<AttemptRecord[]> {
    return this.#run(() => this.#sql.attempts.all(jobId).map(rowToAttempt));
  }

  async close(): Promise<void> {
    await this.#writes.close();
    await this.#checkpointer?.close();
    if (this.#db.open) this.#db.close();
  }

  #get(jobId: string): JobRecord | undefined {
    const row = this.#sql.getJob.get(jobId);
    return row === undefined ? undefined : rowToRecord(row);
  }

  // Every failure leaves as a rejected MusterError, never a synchronous throw across the async seam.
  #run<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(toMusterError(err));
    }
  }

  /**
   * A write for `attempt` of one job, fenced by its owner token when `attempt` is the job's
   * current one on a node (`fenceOf`): refused as a whole with a lower token than the attempt's;
   * a higher one becomes the attempt's (a takeover). `fn` gets the job's row as read inside the
   * write's transaction (undefined for an unknown job, which it answers as for any stale call),
   * to ask the job machine from.
   */
  #fenced<T>(jobId: string, attempt: number, owner: OwnerToken, fn: (row: LifecycleRow | undefined) => T): Promise<T> {
    return this.#tx(() => {
      const row = this.#sql.lifecycle.get(jobId);
      const fence = row === undefined ? 'pass' : fenceOf(row, attempt, owner);
      if (fence === 'refuse') throw staleOwner(jobId, attempt, row?.owner, owner);
      if (fence === 'take') this.#sql.setOwner.run(owner, jobId);
      return fn(row);
    });
  }

  /** A write that moves no node's attempt (cancel request, retry) or starts one (assign). */
  #unfenced<T>(jobId: string, fn: (row: LifecycleRow | undefined) => T): Promise<T> {
    return this.#tx(() => fn(this.#sql.lifecycle.get(jobId)));
  }

  // The group commit takes the write lock (BEGIN IMMEDIATE) before the first read, so a
  // read-then-write is a true compare-and-set even if another process opens the same file.
  #tx<T>(fn: () => T): Promise<T> {
    return this.#writes.write(fn);
  }

  // ---- pipelines: batch submit, listing, retry ----

  #pipelineSql: ReturnType<typeof preparePipelineStatements> | undefined;

  /** Prepared on first use, apart from the statements above. */
  #pipeline(): ReturnType<typeof preparePipelineStatements> {
    this.#pipelineSql ??= preparePipelineStatements(this.#db);
    return this.#pipelineSql;
  }

  submitMany(jobs: readonly NewJob[], _owner: OwnerToken): Promise<JobRecord[]> {
    return this.#tx(() => {
      const at = now();
      let seq = this.#sql.lastSeq.get()!;
      return jobs.map((job) => {
        const { insert, record } = toJobInsert(randomUUID(), job, NO_OWNER, at, ++seq, this.#box);
        this.#sql.insertJob.run(insert);
        return record;
      });
    });
  }

  listJobs(filter: JobListFilter, limit: number): Promise<JobRecord[]> {
    return this.#run(() => this.#listStatement(filter).all({ ...filter, limit }).map(rowToRecord));
  }

  /**
   * One statement per set of filters given, each naming only its own columns, so that SQLite
   * walks an index on (column, seq) backwards (`... = @x OR @x IS NULL` would make it scan).
   */
  #listSql = new Map<string, Database.Statement<[JobListFilter & { limit: number }], JobRow>>();
  #listStatement(filter: JobListFilter): Database.Statement<[JobListFilter & { limit: number }], JobRow> {
    const sql = listSql(filter);
    let statement = this.#listSql.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare<[JobListFilter & { limit: number }], JobRow>(sql);
      this.#listSql.set(sql, statement);
    }
    return statement;
  }

  retry(jobId: string, attempt: number, _owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#unfenced(jobId, (row) => {
      // The job machine decides whether this end may be retried, and what the job becomes.
      const move = decide(row, attempt, { type: 'retry' });
      if (move === undefined) return undefined;
      const { next } = move;
      const changed = this.#pipeline().retry.run({
        job_id: jobId,
        attempt,
        from: move.from.state,
        state: next.state,
        next_attempt: next.attempt,
        cancel_requested: next.cancel_requested ? 1 : 0,
        now: now(),
      }).changes;
      return changed === 0 ? undefined : this.#get(jobId);
    });
  }
}

/**
 * The query of `listJobs` for the filters given (named parameters from JobListFilter and
 * `@limit`): newest first by `seq`, which only grows, so a page ends at a seq and the next one
 * starts below it.
 */
export function listSql(filter: JobListFilter): string {
  const terms: string[] = [];
  if (filter.state !== undefined) terms.push('j.state = @state');
  if (filter.node_id !== undefined) terms.push('j.node_id = @node_id');
  if (filter.priority !== undefined) terms.push('j.priority = @priority');
  if (filter.before_seq !== undefined) terms.push('j.seq < @before_seq');
  const where = terms.length === 0 ? '' : ` WHERE ${terms.join(' AND ')}`;
  return `${JOB_SELECT}${where} ORDER BY j.seq DESC LIMIT @limit`;
}

function preparePipelineStatements(db: Db) {
  return {
    // A new attempt forgets the old one's node, times and reason; its result stays under its own attempt.
    retry: db.prepare<
      [{ job_id: string; attempt: number; from: JobState; state: JobState; next_attempt: number; cancel_requested: number; now: string }]
    >(`
      UPDATE jobs SET state = @state, attempt = @next_attempt, cancel_requested = @cancel_requested, reason = NULL,
        node_id = NULL, assigned_at = NULL, started_at = NULL, owner = ${NO_OWNER}, updated_at = @now
      WHERE job_id = @job_id AND attempt = @attempt AND state = @from`),
  };
}

function staleOwner(jobId: string, attempt: number, held: OwnerToken | undefined, owner: OwnerToken): MusterError {
  return new MusterError('internal', `job ${jobId} attempt ${attempt} is owned by a newer writer (owner token ${held}, this write ${owner})`);
}

/** "database or disk is full (SQLITE_FULL): /var/lib/muster/muster.db" */
function describeFailure(err: Error, path: string): string {
  const code = (err as { code?: unknown }).code;
  return `${err.message}${typeof code === 'string' ? ` (${code})` : ''}: ${path}`;
}

/** A node holds the job's current attempt. */
function isPlaced(state: JobState): boolean {
  return state === 'Assigned' || state === 'Running';
}
