// The SQLite job store's schema and its row ↔ record mapping.
// Kept apart from sqlite-job-store.ts so the store reads as transitions, not column plumbing.
import type Database from 'better-sqlite3';
import type { JobLifecycle } from '../../actors/job-machine.js';
import type { JobMetrics, JobOutcome, LogStream, Priority } from '../../protocol/messages.js';
import type { AttemptRecord, JobRecord, JobState, LogRecord, NewJob } from './job-store.js';
import { SEALED_VALUE, type SecretBox } from './secret-box.js';
import { TOKEN_SCHEMA_SQL } from './token-row.js';

/** Bumped (with a migration) whenever the tables change; kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 7;

// Version 1: jobs, attempts, results, log chunks.
// `seq` is its own column (not the implicit rowid, which VACUUM may renumber) so FIFO order survives.
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS jobs (
  job_id            TEXT PRIMARY KEY,
  seq               INTEGER NOT NULL UNIQUE,
  state             TEXT NOT NULL,
  attempt           INTEGER NOT NULL,
  node_id           TEXT,
  priority          TEXT NOT NULL,
  priority_rank     INTEGER NOT NULL,
  job               TEXT NOT NULL,
  execution_context TEXT NOT NULL,
  selector          TEXT NOT NULL,
  deadline          TEXT,
  max_attempts      INTEGER NOT NULL,
  cancel_requested  INTEGER NOT NULL DEFAULT 0,
  reason            TEXT,
  created_at        TEXT NOT NULL,
  updated_at        TEXT NOT NULL,
  assigned_at       TEXT,
  started_at        TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, priority_rank DESC, seq);
CREATE TABLE IF NOT EXISTS attempts (
  job_id      TEXT NOT NULL,
  attempt     INTEGER NOT NULL,
  node_id     TEXT NOT NULL,
  assigned_at TEXT NOT NULL,
  accepted_at TEXT,
  ended_at    TEXT,
  outcome     TEXT,
  reason      TEXT,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS results (
  job_id    TEXT NOT NULL,
  attempt   INTEGER NOT NULL,
  result    TEXT NOT NULL,
  metrics   TEXT NOT NULL,
  stored_at TEXT NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS log_chunks (
  cursor  INTEGER PRIMARY KEY,
  job_id  TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  stream  TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  data    TEXT NOT NULL,
  UNIQUE (job_id, attempt, stream, seq)
);
CREATE INDEX IF NOT EXISTS log_chunks_by_job ON log_chunks (job_id, cursor);
`;

// Version 3: the owner token (fencing token) of each job's current attempt (owner-fence.ts).
// Jobs written before it get 0, below any real token, so the first write with one takes them.
const OWNER_SQL = `ALTER TABLE jobs ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;`;

/** A migration step that SQL alone cannot do; `box` gives the store's secret key. */
export type MigrationStep = (db: Database.Database, box: () => SecretBox) => void;

// Version 4: job secrets sealed at rest (secret-box.ts). `execution_context` keeps the secrets'
// names with SEALED_VALUE for their values; `sealed_secrets` holds the values, encrypted.
const sealSecrets: MigrationStep = (db, box) => {
  db.exec(`ALTER TABLE jobs ADD COLUMN sealed_secrets TEXT`);
  const rows = db.prepare<[], { job_id: string; execution_context: string }>(`SELECT job_id, execution_context FROM jobs`).all();
  const update = db.prepare<[string, string | null, string]>(`UPDATE jobs SET execution_context = ?, sealed_secrets = ? WHERE job_id = ?`);
  // Overwrite the plaintext the rows leave behind in freed space, not only the rows.
  db.pragma('secure_delete = ON');
  for (const row of rows) {
    const context = JSON.parse(row.execution_context) as NewJob['execution_context'];
    const { execution_context, sealed_secrets } = sealContext(row.job_id, context, box());
    update.run(execution_context, sealed_secrets, row.job_id);
  }
  db.pragma('secure_delete = OFF');
};

// Version 5: `GET /v1/jobs` by state, node or priority, newest first, reads only the jobs it
// answers with (the dead letter queue is `?state=DeadLettered` among millions of ended jobs).
const LIST_INDEX_SQL = `
CREATE INDEX IF NOT EXISTS jobs_list_by_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_list_by_node ON jobs (node_id, seq);
CREATE INDEX IF NOT EXISTS jobs_list_by_priority ON jobs (priority, seq);
`;

// Version 6: the trace context each job was submitted in (JobRecord.traceparent); null for jobs
// submitted before it, or by a plane that does not trace.
const TRACEPARENT_SQL = `ALTER TABLE jobs ADD COLUMN traceparent TEXT;`;

// Version 7: version 1's `jobs_by_state` goes. Every change of a job's state rewrote an entry
// in it and one in version 5's `jobs_list_by_state`, each in two leaf pages (the old state's and
// the new one's), so a job's life wrote about 26 WAL pages where 22 do. `queued()` and
// `active()`, read once when a plane starts, sort what the other index finds.
const DROP_STATE_INDEX_SQL = `DROP INDEX IF EXISTS jobs_by_state;`;

/**
 * `MIGRATIONS[i]` takes a store from version `i` to `i + 1`; a new file runs them all. Each only
 * adds tables, columns or indexes, or drops an index (version 4 also seals the secrets already
 * stored), so the data of the versions before it stays as it was.
 */
export const MIGRATIONS: ReadonlyArray<string | MigrationStep> = [
  SCHEMA_SQL,
  TOKEN_SCHEMA_SQL,
  OWNER_SQL,
  sealSecrets,
  LIST_INDEX_SQL,
  TRACEPARENT_SQL,
  DROP_STATE_INDEX_SQL,
];

/** The context as stored: secret names with SEALED_VALUE, and the values sealed apart (null when none). */
export function sealContext(
  jobId: string,
  context: NewJob['execution_context'],
  box: SecretBox,
): { execution_context: string; sealed_secrets: string | null; shown: NewJob['execution_context'] } {
  const names = Object.keys(context.secrets);
  const shown = { ...context, secrets: names.length === 0 ? {} : Object.fromEntries(names.map((name) => [name, SEALED_VALUE])) };
  const sealed = names.length === 0 ? null : box.seal(JSON.stringify(context.secrets), jobId);
  return { execution_context: JSON.stringify(shown), sealed_secrets: sealed, shown };
}

/** Higher runs first: `queued()` sorts on this descending. */
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = { Critical: 3, High: 2, Normal: 1, Low: 0 };

/** Every select of a job joins the current attempt's result, so a record carries it. */
export const JOB_SELECT = `
SELECT j.*, r.result AS result_json, r.metrics AS metrics_json
FROM jobs j LEFT JOIN results r ON r.job_id = j.job_id AND r.attempt = j.attempt`;

export interface JobRow {
  job_id: string;
  seq: number;
  state: JobState;
  attempt: number;
  node_id: string | null;
  priority: Priority;
  priority_rank: number;
  job: string;
  execution_context: string;
  selector: string;
  deadline: string | null;
  max_attempts: number;
  traceparent: string | null;
  cancel_requested: number;
  owner: number;
  reason: string | null;
  created_at: string;
  updated_at: string;
  assigned_at: string | null;
  started_at: string | null;
  result_json: string | null;
  metrics_json: string | null;
}

/** What a job write reads first: the fencing token and the fields the job machine decides on. */
export interface LifecycleRow {
  owner: number;
  state: JobState;
  attempt: number;
  max_attempts: number;
  cancel_requested: number;
}

export const LIFECYCLE_SELECT = `SELECT owner, state, attempt, max_attempts, cancel_requested FROM jobs WHERE job_id = ?`;

export function rowToLifecycle(row: LifecycleRow): JobLifecycle {
  return { state: row.state, attempt: row.attempt, max_attempts: row.max_attempts, cancel_requested: row.cancel_requested !== 0 };
}

/** Named parameters of the insert in `submit`. */
export interface JobInsert {
  job_id: string;
  seq: number;
  priority: Priority;
  priority_rank: number;
  job: string;
  execution_context: string;
  selector: string;
  deadline: string | null;
  max_attempts: number;
  traceparent: string | null;
  owner: number;
  sealed_secrets: string | null;
  now: string;
}

/**
 * The insert of a new job at `seq`, and the record it stores: made from the job given (its
 * context as stored, secret values `***`), so that a submit need not read its rows back. The
 * record shares `job` and `selector` with `job`, which the caller hands over.
 */
export function toJobInsert(
  jobId: string,
  job: NewJob,
  owner: number,
  now: string,
  seq: number,
  box: SecretBox,
): { insert: JobInsert; record: JobRecord } {
  const { execution_context, sealed_secrets, shown } = sealContext(jobId, job.execution_context, box);
  const insert: JobInsert = {
    job_id: jobId,
    seq,
    priority: job.priority,
    priority_rank: PRIORITY_RANK[job.priority],
    job: JSON.stringify(job.job),
    execution_context,
    selector: JSON.stringify(job.selector),
    deadline: job.deadline ?? null,
    max_attempts: job.max_attempts,
    traceparent: job.traceparent ?? null,
    owner,
    sealed_secrets,
    now,
  };
  const record: JobRecord = {
    job_id: jobId,
    state: 'Queued',
    attempt: 1,
    job: job.job,
    execution_context: shown,
    priority: job.priority,
    selector: job.selector,
    max_attempts: job.max_attempts,
    cancel_requested: false,
    created_at: now,
    seq,
  };
  // As rowToRecord leaves them: absent, not undefined.
  if (job.deadline !== undefined) record.deadline = job.deadline;
  if (job.traceparent !== undefined) record.traceparent = job.traceparent;
  return { insert, record };
}

export function rowToRecord(row: JobRow): JobRecord {
  const record: JobRecord = {
    job_id: row.job_id,
    state: row.state,
    attempt: row.attempt,
    job: JSON.parse(row.job) as JobRecord['job'],
    execution_context: JSON.parse(row.execution_context) as JobRecord['execution_context'],
    priority: row.priority,
    selector: JSON.parse(row.selector) as JobRecord['selector'],
    max_attempts: row.max_attempts,
    cancel_requested: row.cancel_requested !== 0,
    created_at: row.created_at,
    seq: row.seq,
  };
  // Optional fields are left out rather than set to undefined, so records compare and serialise cleanly.
  if (row.deadline !== null) record.deadline = row.deadline;
  if (row.traceparent !== null) record.traceparent = row.traceparent;
  if (row.node_id !== null) record.node_id = row.node_id;
  if (row.reason !== null) record.reason = row.reason;
  if (row.assigned_at !== null) record.assigned_at = row.assigned_at;
  if (row.started_at !== null) record.started_at = row.started_at;
  if (row.result_json !== null) record.result = JSON.parse(row.result_json) as JobOutcome;
  if (row.metrics_json !== null) record.metrics = JSON.parse(row.metrics_json) as JobMetrics;
  return record;
}

export interface LogRow {
  cursor: number;
  attempt: number;
  stream: LogStream;
  seq: number;
  data: string;
}

export function rowToLog(row: LogRow): LogRecord {
  return { attempt: row.attempt, stream: row.stream, seq: row.seq, data: row.data, cursor: row.cursor };
}

/** One row of `attempts`: the history of where a job ran, kept for operators and post-mortems. */

export interface AttemptRow {
  job_id: string;
  attempt: number;
  node_id: string;
  assigned_at: string;
  accepted_at: string | null;
  ended_at: string | null;
  outcome: string | null;
  reason: string | null;
}

export function rowToAttempt(row: AttemptRow): AttemptRecord {
  const record: AttemptRecord = {
    job_id: row.job_id,
    attempt: row.attempt,
    node_id: row.node_id,
    assigned_at: row.assigned_at,
  };
  if (row.accepted_at !== null) record.accepted_at = row.accepted_at;
  if (row.ended_at !== null) record.ended_at = row.ended_at;
  if (row.outcome !== null) record.outcome = row.outcome;
  if (row.reason !== null) record.reason = row.reason;
  return record;
}
