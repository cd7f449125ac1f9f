// What the JetStream job store answers `queued()`, `active()`, `counts()` and `listJobs()` from,
// so that none of them reads every job ever stored: an in-memory index of every job's state,
// priority, node and `seq`, plus the whole doc of each job still in play (Queued, Assigned,
// Running: bounded by the work in flight, not by history). It is fed by the store's own writes
// (at once, with the revision JetStream acknowledged) and by a KV watch of the bucket (every
// replica's writes); each key keeps its highest revision, so the two feeds may arrive in any order.
// It is a hint, as every watch is: a write is always a compare-and-set on the entry itself.
import type { Priority } from '../../protocol/messages.js';
import type { JobListFilter, JobRecord, JobState } from '../store/job-store.js';
import { TERMINAL_STATES } from '../store/job-store.js';
import { docToRecord, seqOf, type JobDoc } from './job-doc.js';

const PRIORITY_RANK: Readonly<Record<Priority, number>> = { Critical: 3, High: 2, Normal: 1, Low: 0 };
/** Ended jobs whose docs the index keeps for `recent` (a few KB each). */
const RECENT_ENDED = 1_024;
export const ALL_STATES: readonly JobState[] = ['Queued', 'Assigned', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered'];

interface Entry {
  state: JobState;
  attempt: number;
  priority: Priority;
  node_id: string | undefined;
  seq: number;
  revision: number;
  /** The doc while the job is in play; dropped once it ended (listJobs reads ended jobs back). */
  doc: JobDoc | undefined;
}

export class JobIndex {
  readonly #entries = new Map<string, Entry>();
  /** Job ids by state (counts, queued, active). */
  readonly #byState = new Map<JobState, Set<string>>(ALL_STATES.map((s) => [s, new Set<string>()]));
  /**
   * The `Assigned` and `Running` jobs of each node: a replica that takes a node over asks for
   * them on every claim, which must not scan every job ever stored.
   */
  readonly #activeByNode = new Map<string, Set<string>>();
  /** Job ids in `seq` order, for listJobs' newest-first paging. */
  readonly #bySeq: Array<{ seq: number; id: string }> = [];
  #revision = 0;
  /**
   * The docs of the jobs that ended last (at most RECENT_ENDED, oldest dropped first): a
   * scheduler whose assign another replica's write refused asks right after, and the job has
   * often ended by then (`recent`); the index keeps no doc of ended jobs otherwise.
   */
  readonly #recentEnded = new Map<string, { doc: JobDoc; revision: number }>();

  /** The highest revision applied: where a watch resumes after a reconnect. */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Takes `doc` at `revision` for `jobId` unless a newer revision is already here. True when it
   * was taken and moved the job (a new job, or another state or attempt): a change to announce.
   */
  apply(jobId: string, doc: JobDoc, revision: number): boolean {
    if (revision > this.#revision) this.#revision = revision;
    const old = this.#entries.get(jobId);
    if (old !== undefined && old.revision >= revision) return false;
    const r = doc.record;
    const entry: Entry = {
      state: r.state,
      attempt: r.attempt,
      priority: r.priority,
      node_id: r.node_id,
      seq: seqOf(doc, revision),
      revision,
      doc: TERMINAL_STATES.has(r.state) ? undefined : doc,
    };
    if (old === undefined) this.#insertSeq(entry.seq, jobId);
    else {
      this.#byState.get(old.state)?.delete(jobId);
      this.#placed(old, jobId, false);
    }
    this.#byState.get(entry.state)?.add(jobId);
    this.#placed(entry, jobId, true);
    this.#entries.set(jobId, entry);
    this.#recentEnded.delete(jobId);
    if (entry.doc === undefined) {
      this.#recentEnded.set(jobId, { doc, revision });
      if (this.#recentEnded.size > RECENT_ENDED) this.#recentEnded.delete(this.#recentEnded.keys().next().value!);
    }
    return old === undefined || old.state !== entry.state || old.attempt !== entry.attempt;
  }

  #placed(entry: Entry, jobId: string, add: boolean): void {
    if (entry.node_id === undefined || (entry.state !== 'Assigned' && entry.state !== 'Running')) return;
    let ids = this.#activeByNode.get(entry.node_id);
    if (add) {
      if (ids === undefined) this.#activeByNode.set(entry.node_id, (ids = new Set()));
      ids.add(jobId);
    } else if (ids !== undefined) {
      ids.delete(jobId);
      if (ids.size === 0) this.#activeByNode.delete(entry.node_id);
    }
  }

  /** Whether `revision` of `jobId` (or a newer one) is here already: a watch echo need not be decoded. */
  knows(jobId: string, revision: number): boolean {
    return (this.#entries.get(jobId)?.revision ?? 0) >= revision;
  }

  /** The newest revision known for `jobId` and its doc if still in play (a write's first guess). */
  cached(jobId: string): { doc: JobDoc; revision: number } | undefined {
    const entry = this.#entries.get(jobId);
    return entry?.doc === undefined ? undefined : { doc: entry.doc, revision: entry.revision };
  }

  /** The newest doc known for `jobId` if it is in play or ended lately (a hint, for `peek`). */
  recent(jobId: string): { doc: JobDoc; revision: number } | undefined {
    return this.cached(jobId) ?? this.#recentEnded.get(jobId);
  }

  counts(): Record<JobState, number> {
    return Object.fromEntries(ALL_STATES.map((s) => [s, this.#byState.get(s)?.size ?? 0])) as Record<JobState, number>;
  }

  /** Queued jobs, Critical first, FIFO within a priority. */
  queued(limit: number | undefined): JobRecord[] {
    const records = this.#recordsIn('Queued');
    records.sort((a, b) => PRIORITY_RANK[b.priority] - PRIORITY_RANK[a.priority] || a.seq - b.seq);
    return limit === undefined ? records : records.slice(0, Math.max(0, limit));
  }

  active(): JobRecord[] {
    const records = [...this.#recordsIn('Assigned'), ...this.#recordsIn('Running')];
    return records.sort((a, b) => PRIORITY_RANK[b.priority] - PRIORITY_RANK[a.priority] || a.seq - b.seq);
  }

  /**
   * Ids matching `filter`, newest first, scanning down from `before_seq`; `accept` is asked of
   * each in turn (the store reads the record and checks it again) until `limit` accepted.
   */
  *newestFirst(filter: JobListFilter): Generator<string> {
    if (filter.node_id !== undefined && (filter.state === 'Assigned' || filter.state === 'Running')) {
      // A node's jobs in play: from its own set, not a scan of history.
      const ids = [...(this.#activeByNode.get(filter.node_id) ?? [])]
        .map((id) => ({ id, entry: this.#entries.get(id) }))
        .filter(({ entry }) => entry !== undefined && matches(entry, filter) && (filter.before_seq === undefined || entry.seq < filter.before_seq))
        .sort((a, b) => b.entry!.seq - a.entry!.seq);
      for (const { id } of ids) yield id;
      return;
    }
    let i = filter.before_seq === undefined ? this.#bySeq.length - 1 : this.#lowerBound(filter.before_seq) - 1;
    for (; i >= 0; i--) {
      const { id } = this.#bySeq[i]!;
      const entry = this.#entries.get(id);
      if (entry !== undefined && matches(entry, filter)) yield id;
    }
  }

  #recordsIn(state: JobState): JobRecord[] {
    const out: JobRecord[] = [];
    for (const id of this.#byState.get(state) ?? []) {
      const entry = this.#entries.get(id);
      if (entry?.doc !== undefined) out.push(docToRecord(entry.doc, entry.revision));
    }
    return out;
  }

  // Creates arrive in revision (= seq) order from one feed, so this is an append but for races
  // between the store's own acknowledgements and the watch.
  #insertSeq(seq: number, id: string): void {
    const at = this.#lowerBound(seq);
    if (at === this.#bySeq.length) this.#bySeq.push({ seq, id });
    else this.#bySeq.splice(at, 0, { seq, id });
  }

  /** The first position whose seq is at least `seq`. */
  #lowerBound(seq: number): number {
    let lo = 0;
    let hi = this.#bySeq.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#bySeq[mid]!.seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export function matches(job: { state: JobState; priority: Priority; node_id?: string | undefined }, filter: JobListFilter): boolean {
  return (
    (filter.state === undefined || job.state === filter.state) &&
    (filter.node_id === undefined || job.node_id === filter.node_id) &&
    (filter.priority === undefined || job.priority === filter.priority)
  );
}
