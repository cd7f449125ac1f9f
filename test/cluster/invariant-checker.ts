// The invariant checker of the cluster failure tests: reads every stored revision of every job
// from the JetStream job bucket (the KV stream itself, so with the bucket's history kept it sees
// each write, not only the last) and checks, from the records alone:
//
// - final: every job reached a final state (and was not deleted);
// - one-result: the final attempt of a job that ended with a result has it; a result is stored
//   only for an attempt that it ended, and never replaced or removed once stored;
// - no-overlap: attempt i of a job ended before attempt i+1 was assigned (from the stored
//   attempts), and, given the agents' logs, no two runs of one job on nodes overlapped in time;
// - fenced: no write landed under a stale token: a fenced write (job-doc.ts `written`) carries
//   at least the token its attempt already had, and an attempt's token never falls;
// - no-healthy-dead: no node the test kept alive was declared dead by a replica (its `node gone`
//   log line with reason `expired` or `failed`), nor had a job withdrawn as if it were gone
//   (dead, or not back after a change of owner: PROTOCOL.md section 4 rule 8).
//
// What it could not check is reported too (`unchecked`), so that a store that keeps no history
// (history 1) cannot pass the fencing check by showing nothing.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { decodeDoc, type JobDoc } from '../../supervisor/cluster/job-doc.js';
import { readStream } from '../../supervisor/cluster/stream-read.js';
import { TERMINAL_STATES } from '../../supervisor/store/job-store.js';

export type Invariant = 'final' | 'one-result' | 'no-overlap' | 'fenced' | 'no-healthy-dead';

export interface Violation {
  invariant: Invariant;
  job_id?: string;
  node_id?: string;
  detail: string;
}

/** One stored value of a job: its KV revision (the bucket stream's sequence) and the doc. */
export interface JobRevision {
  revision: number;
  doc: JobDoc;
}

export interface JobHistory {
  job_id: string;
  /** The retained PUT revisions, oldest first. */
  revisions: JobRevision[];
  /** The job's create is among them (the bucket's history held every write of it). */
  fromCreate: boolean;
  /** The last operation on the key was a delete or purge. */
  deleted: boolean;
}

/** A replica declaring a node dead (from its log). */
export interface NodeDeath {
  replica: string;
  node_id: string;
  reason: string;
  /** Epoch ms. */
  at: number;
}

/** A job's process on a node, from the agent's log; `ended` undefined: still running (or killed with it). */
export interface NodeRun {
  node_id: string;
  job_id: string;
  attempt: number;
  started: number;
  ended?: number;
}

export interface CheckInput {
  histories: ReadonlyMap<string, JobHistory>;
  /** Jobs the test submitted: each must be stored. Default: the jobs found. */
  expectedJobs?: Iterable<string>;
  /** Nodes whose agents stayed alive and connected (to some replica) throughout. */
  healthyNodes?: ReadonlySet<string>;
  deaths?: readonly NodeDeath[];
  runs?: readonly NodeRun[];
}

export interface CheckReport {
  violations: Violation[];
  jobs: number;
  revisions: number;
  /** Fenced writes whose token was compared with the one their attempt had before them. */
  fencedWritesChecked: number;
  /** What could not be checked, and why. */
  unchecked: string[];
}

/** What a replica logs when a node's session ends (supervisor/nodes/registrar.ts). */
export const NODE_GONE_MSG = 'node gone';
/** End reasons that declare a node dead and requeue its jobs (registrar.ts `ended`). */
export const DEATH_REASONS: ReadonlySet<string> = new Set(['expired', 'failed']);
/**
 * Withdrawal reasons that treat the attempt's node as gone (job-coordinator.ts): declared dead
 * (`node <death reason>`), or not back in time after a restart or a change of owner. A healthy
 * node's attempt withdrawn for one of them is what PROTOCOL.md section 4 rule 8 forbids.
 */
export const GONE_NODE_WITHDRAWALS: readonly RegExp[] = [/^node (expired|failed)$/, /^node did not resume/];

// ---------------------------------------------------------------- reading

/** Every retained revision of every job in `bucket`, in stream order. */
export async function readJobHistories(nc: NatsConnection, bucket = 'muster-jobs'): Promise<Map<string, JobHistory>> {
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const prefix = `$KV.${bucket}.`;
  const histories = new Map<string, JobHistory>();
  for (const m of await readStream(js, jsm, `KV_${bucket}`, `${prefix}>`)) {
    const jobId = m.subject.slice(prefix.length);
    let history = histories.get(jobId);
    if (history === undefined) {
      history = { job_id: jobId, revisions: [], fromCreate: false, deleted: false };
      histories.set(jobId, history);
    }
    const op = m.headers?.get('KV-Operation') ?? '';
    if (op === 'DEL' || op === 'PURGE') {
      history.deleted = true;
      continue;
    }
    history.deleted = false;
    const doc = decodeDoc(m.data);
    // Only the created value lacks `seq` (job-doc.ts): the history reaches back to the create.
    if (history.revisions.length === 0) history.fromCreate = doc.seq === undefined;
    history.revisions.push({ revision: m.seq, doc });
  }
  return histories;
}

/** Reads the bucket and checks every invariant. */
export async function checkCluster(
  nc: NatsConnection,
  options: Omit<CheckInput, 'histories'> & { bucket?: string } = {},
): Promise<CheckReport> {
  const histories = await readJobHistories(nc, options.bucket);
  return checkInvariants({ ...options, histories });
}

// ---------------------------------------------------------------- logs

/** The nodes a replica declared dead, from its JSON log lines (pino: `time` in epoch ms). */
export function nodeDeathsInLog(replica: string, lines: ReadonlyArray<Record<string, unknown>>): NodeDeath[] {
  return lines
    .filter((l) => l.msg === NODE_GONE_MSG && typeof l.node_id === 'string' && DEATH_REASONS.has(String(l.reason)))
    .map((l) => ({ replica, node_id: l.node_id as string, reason: String(l.reason), at: Number(l.time) }));
}

/** The runs of jobs on one node, from its agent's JSON log (`job started`, `job ended`; agent/job-manager.ts). */
export function nodeRunsInLog(nodeId: string, lines: ReadonlyArray<Record<string, unknown>>): NodeRun[] {
  const open = new Map<string, NodeRun>();
  const runs: NodeRun[] = [];
  for (const l of lines) {
    if (typeof l.job_id !== 'string' || typeof l.attempt !== 'number') continue;
    const key = `${l.job_id}#${l.attempt}`;
    if (l.msg === 'job started' && !open.has(key)) {
      const run: NodeRun = { node_id: nodeId, job_id: l.job_id, attempt: l.attempt, started: Number(l.time) };
      open.set(key, run);
      runs.push(run);
    } else if (l.msg === 'job ended') {
      const run = open.get(key);
      if (run !== undefined) run.ended = Number(l.time);
      open.delete(key);
    }
  }
  return runs;
}

// ---------------------------------------------------------------- checking

export function checkInvariants(input: CheckInput): CheckReport {
  const violations: Violation[] = [];
  const unchecked: string[] = [];
  let revisions = 0;
  let fencedWritesChecked = 0;
  let truncated = 0;
  let unaudited = 0;
  for (const id of input.expectedJobs ?? []) {
    if (!input.histories.has(id)) violations.push({ invariant: 'final', job_id: id, detail: 'job was never stored' });
  }
  for (const history of input.histories.values()) {
    revisions += history.revisions.length;
    const last = history.revisions.at(-1);
    if (history.deleted || last === undefined) {
      violations.push({ invariant: 'final', job_id: history.job_id, detail: 'job record was deleted' });
      continue;
    }
    violations.push(...finalState(history.job_id, last));
    violations.push(...results(history));
    violations.push(...attemptOrder(history.job_id, last.doc));
    const fence = fencing(history);
    violations.push(...fence.violations);
    fencedWritesChecked += fence.checked;
    unaudited += fence.unaudited;
    if (!history.fromCreate) truncated += 1;
    if (input.healthyNodes !== undefined) violations.push(...withdrawnFromHealthy(history.job_id, last.doc, input.healthyNodes));
  }
  violations.push(...runsOverlap(input.runs ?? []));
  if (input.healthyNodes !== undefined) {
    for (const death of input.deaths ?? []) {
      if (!input.healthyNodes.has(death.node_id)) continue;
      violations.push({
        invariant: 'no-healthy-dead',
        node_id: death.node_id,
        detail: `replica ${death.replica} declared healthy node ${death.node_id} dead (${death.reason}) at ${new Date(death.at).toISOString()}`,
      });
    }
  } else {
    unchecked.push('no-healthy-dead: no healthy nodes given');
  }
  if (input.histories.size > 0 && revisions === input.histories.size) {
    unchecked.push('fenced: the bucket holds one revision per job (history 1): no write can be compared with the one before it');
  }
  if (truncated > 0) unchecked.push(`fenced: ${truncated} job(s) had more writes than the bucket's history keeps; their earliest writes are not checked`);
  if (unaudited > 0) unchecked.push(`fenced: ${unaudited} write(s) changed a running attempt without naming their token (a store without job-doc.ts \`written\`)`);
  if (input.runs === undefined) unchecked.push('no-overlap: no runs on nodes given; only the stored attempts are checked');
  return { violations, jobs: input.histories.size, revisions, fencedWritesChecked, unchecked };
}

function finalState(jobId: string, last: JobRevision): Violation[] {
  const { record, attempts } = last.doc;
  if (!TERMINAL_STATES.has(record.state)) {
    return [{ invariant: 'final', job_id: jobId, detail: `job ended the run ${record.state} at attempt ${record.attempt} (revision ${last.revision})` }];
  }
  const open = attempts.find((a) => a.ended_at === undefined);
  if (open !== undefined) {
    return [{ invariant: 'final', job_id: jobId, detail: `job is ${record.state} but its attempt ${open.attempt} on ${open.node_id} never ended` }];
  }
  return [];
}

/** Results: the final attempt's where the state came from one, none for an attempt they did not end, none replaced. */
function results(history: JobHistory): Violation[] {
  const out: Violation[] = [];
  const jobId = history.job_id;
  const last = history.revisions.at(-1)!.doc;
  const { state, attempt } = last.record;
  const final = last.results[String(attempt)];
  if ((state === 'Completed' || state === 'Failed') && final === undefined) {
    out.push({ invariant: 'one-result', job_id: jobId, detail: `job is ${state} with no result stored for its final attempt ${attempt}` });
  }
  if (state === 'DeadLettered' && final !== undefined) {
    out.push({ invariant: 'one-result', job_id: jobId, detail: `job is DeadLettered but a result is stored for its final attempt ${attempt}` });
  }
  for (const [key, stored] of Object.entries(last.results)) {
    const ended = last.attempts.find((a) => String(a.attempt) === key);
    if (ended?.outcome !== stored.result.status) {
      out.push({
        invariant: 'one-result',
        job_id: jobId,
        detail: `a ${stored.result.status} result is stored for attempt ${key}, which ended ${ended?.outcome ?? 'never'} (a second result, or one for a withdrawn attempt)`,
      });
    }
  }
  // Once stored, a result stays as it was.
  const seen = new Map<string, string>();
  for (const { revision, doc } of history.revisions) {
    for (const [key, text] of seen) {
      const now = doc.results[key];
      if (now === undefined) out.push({ invariant: 'one-result', job_id: jobId, detail: `the result of attempt ${key} was removed at revision ${revision}` });
      else if (JSON.stringify(now) !== text) out.push({ invariant: 'one-result', job_id: jobId, detail: `the result of attempt ${key} was replaced at revision ${revision}` });
    }
    for (const [key, stored] of Object.entries(doc.results)) if (!seen.has(key)) seen.set(key, JSON.stringify(stored));
  }
  return out;
}

/** Attempts in order, one record each, each ended before the next was assigned. */
function attemptOrder(jobId: string, doc: JobDoc): Violation[] {
  const out: Violation[] = [];
  const attempts = doc.attempts;
  for (let i = 1; i < attempts.length; i++) {
    const before = attempts[i - 1]!;
    const after = attempts[i]!;
    if (after.attempt <= before.attempt) {
      out.push({ invariant: 'no-overlap', job_id: jobId, detail: `attempt ${after.attempt} (${after.node_id}) is recorded after attempt ${before.attempt} (${before.node_id})` });
      continue;
    }
    if (before.ended_at === undefined) {
      out.push({ invariant: 'no-overlap', job_id: jobId, detail: `attempt ${after.attempt} was assigned to ${after.node_id} while attempt ${before.attempt} on ${before.node_id} had not ended` });
    } else if (Date.parse(before.ended_at) > Date.parse(after.assigned_at)) {
      out.push({
        invariant: 'no-overlap',
        job_id: jobId,
        detail: `attempt ${after.attempt} was assigned to ${after.node_id} at ${after.assigned_at}, before attempt ${before.attempt} on ${before.node_id} ended at ${before.ended_at}`,
      });
    }
  }
  return out;
}

/**
 * Consecutive retained revisions are consecutive writes of the job (a bucket drops only the
 * oldest). A write fenced for attempt a, on a doc whose current attempt a was on a node, must
 * carry at least the token that attempt had; and the attempt's token must never fall.
 */
function fencing(history: JobHistory): { violations: Violation[]; checked: number; unaudited: number } {
  const violations: Violation[] = [];
  let checked = 0;
  let unaudited = 0;
  const jobId = history.job_id;
  for (let i = 1; i < history.revisions.length; i++) {
    const prev = history.revisions[i - 1]!.doc;
    const { revision, doc } = history.revisions[i]!;
    const onNode = prev.record.state !== 'Queued';
    const written = doc.written;
    if (written !== undefined && written.attempt === prev.record.attempt && onNode) {
      checked += 1;
      if (written.owner < prev.owner) {
        violations.push({
          invariant: 'fenced',
          job_id: jobId,
          detail: `revision ${revision} was written for attempt ${written.attempt} with token ${written.owner}, below the token ${prev.owner} that attempt already carried`,
        });
      }
    } else if (written === undefined && onNode && doc.record.attempt === prev.record.attempt && changedAttempt(prev, doc)) {
      unaudited += 1;
    }
    if (onNode && doc.record.state !== 'Queued' && doc.record.attempt === prev.record.attempt && doc.owner < prev.owner) {
      violations.push({
        invariant: 'fenced',
        job_id: jobId,
        detail: `the token of attempt ${doc.record.attempt} fell from ${prev.owner} to ${doc.owner} at revision ${revision}`,
      });
    }
  }
  return { violations, checked, unaudited };
}

/** A write that moved the running attempt (state, results or attempts), which only fenced writes do; not a cancel mark. */
function changedAttempt(prev: JobDoc, doc: JobDoc): boolean {
  return (
    prev.record.state !== doc.record.state ||
    prev.owner !== doc.owner ||
    JSON.stringify(prev.results) !== JSON.stringify(doc.results) ||
    JSON.stringify(prev.attempts) !== JSON.stringify(doc.attempts)
  );
}

/** A job withdrawn from a healthy node because the node was taken for gone (GONE_NODE_WITHDRAWALS). */
function withdrawnFromHealthy(jobId: string, doc: JobDoc, healthy: ReadonlySet<string>): Violation[] {
  return doc.attempts
    .filter((a) => a.outcome === 'Withdrawn' && healthy.has(a.node_id) && GONE_NODE_WITHDRAWALS.some((r) => r.test(a.reason ?? '')))
    .map((a) => ({
      invariant: 'no-healthy-dead' as const,
      job_id: jobId,
      node_id: a.node_id,
      detail: `attempt ${a.attempt} was withdrawn from healthy node ${a.node_id} (${a.reason}) at ${a.ended_at ?? '?'}`,
    }));
}

/** No two runs of one job on nodes at the same time (the agents' own account). */
function runsOverlap(runs: readonly NodeRun[]): Violation[] {
  const out: Violation[] = [];
  const byJob = new Map<string, NodeRun[]>();
  for (const run of runs) {
    const list = byJob.get(run.job_id) ?? [];
    list.push(run);
    byJob.set(run.job_id, list);
  }
  for (const [jobId, list] of byJob) {
    list.sort((a, b) => a.started - b.started);
    // The run that ends last of those started so far: any later start before its end overlaps it.
    let longest = list[0]!;
    for (const after of list.slice(1)) {
      if ((longest.ended ?? Infinity) > after.started) {
        out.push({
          invariant: 'no-overlap',
          job_id: jobId,
          node_id: after.node_id,
          detail: `attempt ${after.attempt} started on ${after.node_id} at ${new Date(after.started).toISOString()} while attempt ${longest.attempt} still ran on ${longest.node_id}`,
        });
      }
      if ((after.ended ?? Infinity) > (longest.ended ?? Infinity)) longest = after;
    }
  }
  return out;
}
