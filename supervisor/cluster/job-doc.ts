// A job as the JetStream store keeps it: one KV value per job (key = job id) holding the record,
// the owner token of its current attempt, its sealed secrets, every attempt and every stored
// result by attempt. One value per job makes every transition one compare-and-set on the entry's
// revision, and a result is stored once per (job_id, attempt) because it is a field of that value.
import type { JobMetrics, JobOutcome } from '../../protocol/messages.js';
import type { AttemptRecord, JobRecord, NewJob, OwnerToken } from '../store/job-store.js';
import { SEALED_VALUE, type SecretBox } from '../store/secret-box.js';

/** The record's fields without those the doc keeps elsewhere (`seq`) or derives (`result`, `metrics`). */
export type StoredRecord = Omit<JobRecord, 'seq' | 'result' | 'metrics'>;

export interface JobDoc {
  record: StoredRecord;
  /**
   * Submission order: the revision of the entry's create. Absent in the created value itself
   * (its revision is not known before it is written); the first update copies it in from the
   * entry it read, so `seqOf` gives the same number before and after.
   */
  seq?: number;
  /** The owner token of the current attempt (owner-fence.ts); NO_OWNER while queued. */
  owner: OwnerToken;
  /** `execution_context.secrets`, sealed with the cluster's SecretBox (job id as additional data). */
  sealed_secrets?: string;
  attempts: AttemptRecord[];
  /** Stored results by attempt: each attempt's at most once. */
  results: Record<string, { result: JobOutcome; metrics: JobMetrics }>;
  /**
   * The attempt and token of the fenced write that made this value (a write for the current
   * attempt: markRunning, requeue, storeResult, finish, a takeover); absent after any other
   * write. With the bucket's history kept, an auditor can check from the stored revisions alone
   * that no write landed under a token lower than the one its attempt already carried
   * (test/cluster/invariant-checker.ts); the doc's `owner` cannot show that, as a fenced write
   * that passes keeps it unchanged.
   */
  written?: { attempt: number; owner: OwnerToken };
}

export function newDoc(jobId: string, job: NewJob, at: string, box: SecretBox, owner: OwnerToken): JobDoc {
  const names = Object.keys(job.execution_context.secrets);
  const record: StoredRecord = {
    ...job,
    execution_context: { ...job.execution_context, secrets: Object.fromEntries(names.map((n) => [n, SEALED_VALUE])) },
    job_id: jobId,
    state: 'Queued',
    attempt: 1,
    cancel_requested: false,
    created_at: at,
  };
  const doc: JobDoc = { record, owner, attempts: [], results: {} };
  if (names.length > 0) doc.sealed_secrets = box.seal(JSON.stringify(job.execution_context.secrets), jobId);
  return doc;
}

export function seqOf(doc: JobDoc, revision: number): number {
  return doc.seq ?? revision;
}

/** The record of `doc`, read at `revision`, with the current attempt's result if stored. */
export function docToRecord(doc: JobDoc, revision: number): JobRecord {
  const record: JobRecord = { ...doc.record, seq: seqOf(doc, revision) };
  const stored = doc.results[String(doc.record.attempt)];
  if (stored !== undefined) {
    record.result = stored.result;
    record.metrics = stored.metrics;
  }
  return record;
}

// Buffer's UTF-8 rather than TextEncoder/TextDecoder: faster in V8 (bus-event-codec.ts), and a
// replica encodes a doc per job write and decodes every other replica's.
export function encodeDoc(doc: JobDoc): Uint8Array {
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

export function decodeDoc(bytes: Uint8Array): JobDoc {
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')) as JobDoc;
}

/** Optional fields are removed rather than set to undefined, so records compare and serialise cleanly. */
export function unset<T extends object>(target: T, ...keys: Array<keyof T>): void {
  for (const key of keys) delete target[key];
}
