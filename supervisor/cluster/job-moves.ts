// The JetStream store's transitions as pure functions on a job's doc (job-doc.ts): each asks the
// job machine (actors/job-machine.ts) where the event takes the job, as the SQLite store does,
// and returns the doc to write, or undefined when the machine refuses or the attempt is stale.
// The store writes the answer with a compare-and-set on the revision it read, so a move decided
// on a doc another replica changed meanwhile is decided again on the new one.
import { nextJobState, type JobEvent, type JobLifecycle } from '../../actors/job-machine.js';
import type { JobMetrics, JobOutcome, ResultStatus } from '../../protocol/messages.js';
import { NO_OWNER } from '../store/owner-fence.js';
import type { OwnerToken } from '../store/job-store.js';
import { unset, type JobDoc } from './job-doc.js';

interface Move {
  from: JobLifecycle;
  next: JobLifecycle;
}

/** The machine's answer for `event` at `attempt` (the compare-and-set), or undefined. */
function decide(doc: JobDoc, attempt: number, event: JobEvent): Move | undefined {
  const { state, attempt: current, max_attempts, cancel_requested } = doc.record;
  if (current !== attempt) return undefined;
  const from = { state, attempt, max_attempts, cancel_requested };
  const next = nextJobState(from, event);
  return next === undefined ? undefined : { from, next };
}

/**
 * A copy to change: the read doc stays as read, for a retry after a lost compare-and-set. Only
 * the parts a move changes are copied (the record's own fields, the attempts, the results map);
 * the spec inside is shared, never changed. (structuredClone cost more than a JetStream write.)
 */
const copy = (doc: JobDoc): JobDoc => ({
  ...doc,
  record: { ...doc.record },
  attempts: doc.attempts.map((a) => ({ ...a })),
  results: { ...doc.results },
});

/**
 * The move onto the record; `reason` 'keep' leaves it, null drops it. A new attempt forgets the
 * old one's node, times and owner; an attempt that ends the job keeps its node.
 */
function transition(doc: JobDoc, { next }: Move, reason: string | null | 'keep'): void {
  const r = doc.record;
  r.state = next.state;
  r.attempt = next.attempt;
  r.cancel_requested = next.cancel_requested;
  if (reason === null) unset(r, 'reason');
  else if (reason !== 'keep') r.reason = reason;
  if (next.state === 'Queued' || next.state === 'DeadLettered') unset(r, 'node_id');
  if (next.state === 'Queued') {
    unset(r, 'assigned_at', 'started_at');
    doc.owner = NO_OWNER;
  }
}

function endAttempt(doc: JobDoc, attempt: number, outcome: string, reason: string | null, at: string): void {
  const entry = doc.attempts.find((a) => a.attempt === attempt && a.ended_at === undefined);
  if (entry === undefined) return;
  entry.ended_at = at;
  entry.outcome = outcome;
  if (reason !== null) entry.reason = reason;
}

export function assignMove(doc: JobDoc, attempt: number, nodeId: string, owner: OwnerToken, at: string): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'assign' });
  if (move === undefined) return undefined;
  const out = copy(doc);
  out.record.state = move.next.state;
  out.record.node_id = nodeId;
  out.record.assigned_at = at;
  unset(out.record, 'started_at');
  out.attempts.push({ job_id: doc.record.job_id, attempt, node_id: nodeId, assigned_at: at });
  // A new attempt takes its writer's token, whatever the last attempt's was (owner-fence.ts).
  out.owner = owner;
  return out;
}

export function acceptMove(doc: JobDoc, attempt: number, at: string): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'accept' });
  if (move === undefined) return undefined;
  const out = copy(doc);
  out.record.state = move.next.state;
  out.record.started_at = at;
  const entry = out.attempts.find((a) => a.attempt === attempt);
  if (entry !== undefined) entry.accepted_at = at;
  return out;
}

export function withdrawMove(doc: JobDoc, attempt: number, reason: string, at: string): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'withdraw' });
  if (move === undefined) return undefined;
  const out = copy(doc);
  transition(out, move, reason);
  endAttempt(out, attempt, 'Withdrawn', reason, at);
  return out;
}

export function resultMove(doc: JobDoc, attempt: number, result: JobOutcome, metrics: JobMetrics, at: string): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'result', status: result.status });
  if (move === undefined) return undefined;
  const out = copy(doc);
  // A result explains the end by itself: drop the reason an earlier requeue left.
  transition(out, move, null);
  out.results[String(attempt)] = { result, metrics };
  endAttempt(out, attempt, result.status, null, at);
  return out;
}

export function finishMove(
  doc: JobDoc,
  attempt: number,
  state: Extract<ResultStatus, 'Cancelled' | 'TimedOut'>,
  reason: string,
  at: string,
): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'finish', state });
  if (move === undefined) return undefined;
  const out = copy(doc);
  transition(out, move, reason);
  endAttempt(out, attempt, state, reason, at);
  return out;
}

/** Queued: Cancelled at once; Assigned or Running: only marked; an ended job: undefined. */
export function cancelMove(doc: JobDoc): JobDoc | undefined {
  const move = decide(doc, doc.record.attempt, { type: 'cancel' });
  if (move === undefined) return undefined;
  if (move.next.cancel_requested === doc.record.cancel_requested && move.next.state === move.from.state) return undefined;
  const out = copy(doc);
  transition(out, move, move.next.state === move.from.state ? 'keep' : 'cancel requested');
  return out;
}

export function retryMove(doc: JobDoc, attempt: number): JobDoc | undefined {
  const move = decide(doc, attempt, { type: 'retry' });
  if (move === undefined) return undefined;
  const out = copy(doc);
  transition(out, move, null);
  unset(out.record, 'node_id', 'assigned_at', 'started_at');
  out.owner = NO_OWNER;
  return out;
}

/** A takeover: the attempt's token rises to `owner`, nothing else changes. */
export function takeOver(doc: JobDoc, owner: OwnerToken): JobDoc {
  const out = copy(doc);
  out.owner = owner;
  return out;
}
