// Queued jobs in memory, indexed by what they need: one bucket per canonical selector and
// resource shape, each a heap in placement order (Critical > High > Normal > Low, then FIFO by
// `seq`). Jobs of one bucket are interchangeable to every node, so only a bucket's head is
// ever tried: a bucket no node can take costs one look however long it is, and never hides a
// job of another bucket. The store stays the truth; this is the scheduler's view of it.
//
// Each bucket is filed under one term of its selector (its anchor: a tag, else the job type,
// else the runner type; none for a selector without any): a node with new room looks only at
// the buckets filed under the terms it offers, so a thousand jobs pinned to other nodes cost it
// nothing, while a bucket it can take is always among them (it offers every term of it).
//
// Beside the buckets: jobs held back after a withdrawn attempt (retry backoff), and the
// deadlines of queued jobs, each a heap by time, so the scheduler's timer finds what is due
// without reading the queue.
import { reservedFor, type Resources } from '../../actors/node-capacity.js';
import type { Priority } from '../../protocol/messages.js';
import type { JobRecord } from '../store/job-store.js';
import { placementSelector, type NodeCapacity, type PlacementSelector } from './job-matcher.js';
import { MinHeap } from './min-heap.js';

const RANK: Record<Priority, number> = { Critical: 0, High: 1, Normal: 2, Low: 3 };

/** One queued job as the index holds it; `live` turns false when it leaves (lazily dropped from heaps). */
export interface QueuedJob {
  readonly record: JobRecord;
  readonly bucket: Bucket;
  live: boolean;
}

interface Delayed {
  readonly record: JobRecord;
  readonly until: number;
  live: boolean;
}

interface Deadline {
  readonly jobId: string;
  readonly attempt: number;
  readonly at: number;
}

/** True when `a` is placed before `b`: higher priority, then submitted earlier. */
export function ahead(a: JobRecord, b: JobRecord): boolean {
  const ra = RANK[a.priority];
  const rb = RANK[b.priority];
  return ra !== rb ? ra < rb : a.seq < b.seq;
}

/** The canonical key of what a job needs: selector terms sorted, resources as reserved. */
export function needKey(selector: PlacementSelector, need: Resources): string {
  const tags = Object.entries(selector.tags ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const features = [...(selector.wire_features ?? [])].sort();
  return JSON.stringify([selector.runner_type ?? null, selector.job_type ?? null, tags, need.cpu_cores, need.memory_mb, need.disk_gb, features]);
}

/** What a node offers, as the anchors of the buckets it may take from (see `anchorOf`). */
export type Offer = Pick<NodeCapacity, 'runnerTypes' | 'supportedJobTypes' | 'tags'>;

/** The term a selector's bucket is filed under; '' when it names none. Tags first: they narrow most. */
function anchorOf(selector: PlacementSelector): string {
  const tags = Object.entries(selector.tags ?? {});
  if (tags.length > 0) {
    const [key, value] = tags.reduce((a, b) => (b[0] < a[0] ? b : a));
    return ANCHOR.tag(key, value);
  }
  if (selector.job_type !== undefined) return ANCHOR.jobType(selector.job_type);
  if (selector.runner_type !== undefined) return ANCHOR.runnerType(selector.runner_type);
  return '';
}

/** The anchor of each kind of term, one place for both sides: a selector's bucket and a node's offer. */
const ANCHOR = {
  tag: (key: string, value: string): string => `t\u0000${key}\u0000${value}`,
  jobType: (jobType: string): string => `j\u0000${jobType}`,
  runnerType: (runnerType: string): string => `r\u0000${runnerType}`,
};

/** The queued jobs that need the same thing. */
export class Bucket {
  private readonly heap = new MinHeap<QueuedJob>((a, b) => ahead(a.record, b.record));
  /** Jobs in the bucket that are still queued. */
  live = 0;
  /** The selector term it is filed under in its index (`anchorOf`). */
  readonly anchor: string;

  constructor(
    readonly key: string,
    readonly selector: PlacementSelector,
    readonly need: Resources,
  ) {
    this.anchor = anchorOf(selector);
  }

  /** The job placed next from this bucket. */
  head(): QueuedJob | undefined {
    let top = this.heap.peek();
    while (top !== undefined && !top.live) {
      this.heap.pop();
      top = this.heap.peek();
    }
    return top;
  }

  add(entry: QueuedJob): void {
    this.heap.push(entry);
    this.live++;
  }
}

export class QueueIndex {
  private readonly buckets = new Map<string, Bucket>();
  /** Non-empty buckets by anchor. */
  private readonly byAnchor = new Map<string, Set<Bucket>>();
  private readonly jobs = new Map<string, QueuedJob>();
  private readonly delayed = new Map<string, Delayed>();
  private readonly retryHeap = new MinHeap<Delayed>((a, b) => a.until < b.until);
  private readonly deadlineHeap = new MinHeap<Deadline>((a, b) => a.at < b.at);

  /** Queued jobs known, in buckets or held back. */
  get size(): number {
    return this.jobs.size + this.delayed.size;
  }

  /** Queued jobs by priority, in buckets or held back (a scan: for a scrape, not per job). */
  depthByPriority(): Map<Priority, number> {
    const depth = new Map<Priority, number>([['Critical', 0], ['High', 0], ['Normal', 0], ['Low', 0]]);
    for (const { record } of this.jobs.values()) depth.set(record.priority, (depth.get(record.priority) ?? 0) + 1);
    for (const { record } of this.delayed.values()) depth.set(record.priority, (depth.get(record.priority) ?? 0) + 1);
    return depth;
  }

  /**
   * The non-empty buckets a node with this offer might take from: those filed under a term it
   * offers, and those whose selector names no term. Every bucket it matches is among them.
   */
  *bucketsOffered(offer: Offer): Generator<Bucket> {
    yield* this.byAnchor.get('') ?? [];
    for (const [key, value] of Object.entries(offer.tags)) yield* this.byAnchor.get(ANCHOR.tag(key, value)) ?? [];
    for (const jobType of offer.supportedJobTypes) yield* this.byAnchor.get(ANCHOR.jobType(jobType)) ?? [];
    for (const runnerType of offer.runnerTypes) yield* this.byAnchor.get(ANCHOR.runnerType(runnerType)) ?? [];
  }

  /** True when this attempt of the job is already indexed. */
  has(jobId: string, attempt: number): boolean {
    const known = this.jobs.get(jobId)?.record ?? this.delayed.get(jobId)?.record;
    return known !== undefined && known.attempt === attempt;
  }

  /** The attempt of the job that is indexed, if any. */
  attemptOf(jobId: string): number | undefined {
    return (this.jobs.get(jobId)?.record ?? this.delayed.get(jobId)?.record)?.attempt;
  }

  /** Where the job waits: in a bucket, held back until a time, or not known. */
  whereIs(jobId: string): { bucket: Bucket } | { until: number } | undefined {
    const queued = this.jobs.get(jobId);
    if (queued !== undefined) return { bucket: queued.bucket };
    const delayed = this.delayed.get(jobId);
    return delayed === undefined ? undefined : { until: delayed.until };
  }

  /**
   * Indexes a queued job (replacing an earlier attempt of it); held back until `notBefore`
   * when that is later than `now`. Returns its bucket when it can be placed now.
   */
  add(record: JobRecord, now: number, notBefore = 0): Bucket | undefined {
    this.remove(record.job_id);
    if (record.deadline !== undefined) {
      this.deadlineHeap.push({ jobId: record.job_id, attempt: record.attempt, at: Date.parse(record.deadline) });
    }
    if (notBefore > now) {
      const delayed: Delayed = { record, until: notBefore, live: true };
      this.delayed.set(record.job_id, delayed);
      this.retryHeap.push(delayed);
      return undefined;
    }
    return this.enqueue(record);
  }

  /** The job left the queue (placed, cancelled, expired): forgets it. */
  remove(jobId: string): void {
    const queued = this.jobs.get(jobId);
    if (queued !== undefined) {
      this.jobs.delete(jobId);
      queued.live = false;
      queued.bucket.live--;
      if (queued.bucket.live === 0) this.dropBucket(queued.bucket);
    }
    const delayed = this.delayed.get(jobId);
    if (delayed !== undefined) {
      this.delayed.delete(jobId);
      delayed.live = false;
    }
  }

  /** Jobs whose backoff is over move into their buckets; returns those buckets. */
  releaseDue(now: number): Bucket[] {
    const released: Bucket[] = [];
    for (let top = this.retryHeap.peek(); top !== undefined && (!top.live || top.until <= now); top = this.retryHeap.peek()) {
      this.retryHeap.pop();
      if (!top.live) continue;
      this.delayed.delete(top.record.job_id);
      released.push(this.enqueue(top.record));
    }
    return released;
  }

  /** Queued jobs whose deadline has passed, taken out of the index. */
  takeExpired(now: number): JobRecord[] {
    const expired: JobRecord[] = [];
    for (let top = this.deadlineHeap.peek(); top !== undefined && top.at <= now; top = this.deadlineHeap.peek()) {
      this.deadlineHeap.pop();
      const record = this.jobs.get(top.jobId)?.record ?? this.delayed.get(top.jobId)?.record;
      if (record === undefined || record.attempt !== top.attempt) continue;
      this.remove(top.jobId);
      expired.push(record);
    }
    return expired;
  }

  /** When the next held-back job or deadline is due; undefined when none is. */
  nextDue(): number | undefined {
    while (this.retryHeap.peek()?.live === false) this.retryHeap.pop();
    const retry = this.retryHeap.peek()?.until;
    const deadline = this.deadlineHeap.peek()?.at;
    if (retry === undefined) return deadline;
    return deadline === undefined ? retry : Math.min(retry, deadline);
  }

  private enqueue(record: JobRecord): Bucket {
    const need = reservedFor(record.job.resource_requirements);
    const selector = placementSelector(record);
    const key = needKey(selector, need);
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = new Bucket(key, selector, need);
      this.buckets.set(key, bucket);
      let filed = this.byAnchor.get(bucket.anchor);
      if (filed === undefined) this.byAnchor.set(bucket.anchor, (filed = new Set()));
      filed.add(bucket);
    }
    const entry: QueuedJob = { record, bucket, live: true };
    this.jobs.set(record.job_id, entry);
    bucket.add(entry);
    return bucket;
  }

  private dropBucket(bucket: Bucket): void {
    this.buckets.delete(bucket.key);
    const filed = this.byAnchor.get(bucket.anchor);
    filed?.delete(bucket);
    if (filed?.size === 0) this.byAnchor.delete(bucket.anchor);
  }
}
