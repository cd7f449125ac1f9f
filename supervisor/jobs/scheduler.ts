// Places queued jobs on nodes. Queued jobs live in a QueueIndex (buckets by what they need,
// each in priority then FIFO order) and nodes in a FleetIndex (by what they offer and how
// loaded they are), both kept up to date by events, so no pass reads the queue or the fleet:
//
// - A bucket is open when it gained jobs, or a node that gained room (registered, a job
//   ended, accepting again) could take its head. A pass places the best head across the open
//   buckets on the node the policy picks (spread: least loaded; binpack: most loaded that
//   fits), again and again, and closes a bucket whose head no node has room for: the rest
//   of it waits without being looked at. So priority then FIFO hold among the jobs a node
//   can take, whatever waits in buckets it cannot take.
// Between passes every queued job is unplaceable, so each pass looks only at what changed.
//
// The store stays the truth: every job that becomes Queued is announced on the bus (submit,
// requeue), and an assignment is the store's compare-and-set, so a stale index entry costs one
// failed assignment and nothing else. One pass runs at a time; wakes during a pass coalesce.
import { outsideSpans } from '../../observability/spans.js';
import type { Logger } from 'pino';
import { reservedFor } from '../../actors/node-capacity.js';
import type { WaitingFor } from '../admin/wire-types.js';
import type { Bus, BusEvent } from '../bus/bus.js';
import type { Priority } from '../../protocol/messages.js';
import type { JobRecord, JobStore } from '../store/job-store.js';
import { FleetIndex, type SchedulingPolicy } from './fleet-index.js';
import { placementSelector, type NodeCapacity } from './job-matcher.js';
import { MinHeap } from './min-heap.js';
import { ahead, QueueIndex, type Bucket, type QueuedJob } from './queue-index.js';

/** setTimeout cannot wait longer than about 24.8 days; a later moment is looked at again then. */
const MAX_TIMER_MS = 2_000_000_000;

export interface SchedulerOptions {
  store: JobStore;
  /** Where jobs that become `Queued` (submitted, requeued) or leave the queue are announced. */
  bus: Bus;
  logger: Logger;
  policy?: SchedulingPolicy;
  /** A withdrawn attempt waits this long before its next is placed, doubling per attempt; 0: at once. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** Assigns the job to the node; false when it lost a race (the job is then looked up again). */
  assign(job: JobRecord, nodeId: string): Promise<boolean>;
  /** A queued job whose deadline passed. */
  expire(job: JobRecord): Promise<void>;
  /** The clock, for tests. */
  now?: () => number;
}

export class Scheduler {
  readonly fleet: FleetIndex;
  private readonly queue = new QueueIndex();
  private readonly dirtyNodes = new Set<string>();
  private readonly dirtyBuckets = new Set<Bucket>();
  /** Per bucket: whether some node could ever take it, as of a fleet version. */
  private readonly matchCache = new WeakMap<Bucket, { version: number; any: boolean }>();
  private readonly now: () => number;
  private readonly unsubscribe: () => void;
  private running = false;
  private again = false;
  private stopped = false;
  /** Store reads under way for jobs announced on the bus. */
  private lookups = 0;
  private idlers: (() => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt: number | undefined;

  constructor(private readonly o: SchedulerOptions) {
    this.fleet = new FleetIndex(o.policy ?? 'spread');
    this.now = o.now ?? Date.now;
    this.unsubscribe = o.bus.subscribe((event) => this.heard(event));
  }

  /** Reads the queue once, at start-up; from then on the bus keeps the index. */
  async load(): Promise<void> {
    for (const record of await this.o.store.queued()) {
      if (!this.queue.has(record.job_id, record.attempt)) this.admit(record, 0);
    }
  }

  /** A job just stored as `Queued` (saves the store read its bus event would cost). */
  enqueue(record: JobRecord): void {
    if (record.state === 'Queued' && !this.queue.has(record.job_id, record.attempt)) this.admit(record, 0);
  }

  /** What a node offers and holds now; `owner` is its session, so a replaced one cannot remove it. */
  nodeReported(cap: NodeCapacity, owner: unknown): void {
    if (this.stopped) return;
    if (this.fleet.put(cap, owner)) this.nodeHasRoom(cap.nodeId);
  }

  nodeGone(nodeId: string, owner: unknown): void {
    this.fleet.remove(nodeId, owner);
  }

  /** Queued jobs by priority (for `/metrics`). */
  queueDepth(): Map<Priority, number> {
    return this.queue.depthByPriority();
  }

  /** Why a queued job waits; undefined when it is not queued. */
  waitingFor(job: JobRecord): WaitingFor | undefined {
    if (job.state !== 'Queued') return undefined;
    const where = this.queue.whereIs(job.job_id);
    if (where !== undefined && 'until' in where) return 'retry_backoff';
    const need = reservedFor(job.job.resource_requirements);
    if (where === undefined) return this.fleet.anyMatches(placementSelector(job), need) ? 'matching_nodes_full' : 'no_matching_node';
    let cached = this.matchCache.get(where.bucket);
    if (cached === undefined || cached.version !== this.fleet.version) {
      cached = { version: this.fleet.version, any: this.fleet.anyMatches(where.bucket.selector, need) };
      this.matchCache.set(where.bucket, cached);
    }
    return cached.any ? 'matching_nodes_full' : 'no_matching_node';
  }

  /** Asks for a pass soon; cheap to call often. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    // A pass serves every queued job, whoever woke it: it runs in no request's trace (and its log
    // lines carry no trace id); each assignment continues its own job's trace (job-trace.ts).
    setImmediate(() => outsideSpans(() => void this.loop()));
  }

  /** Resolves once no pass runs or is asked for, and no announced job is still being read. */
  idle(): Promise<void> {
    if (!this.running && this.lookups === 0) return Promise.resolve();
    return new Promise((resolve) => this.idlers.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    clearTimeout(this.timer);
    this.settleIdlers();
  }

  private heard(event: BusEvent): void {
    if (event.kind !== 'job' || this.stopped) return;
    if (event.state !== 'Queued') {
      // Placed, ended or cancelled: that attempt no longer waits.
      const attempt = this.queue.attemptOf(event.job_id);
      if (attempt !== undefined && attempt <= event.attempt) this.queue.remove(event.job_id);
      return;
    }
    if (this.queue.has(event.job_id, event.attempt)) return;
    // Another replica's job, as this store already holds it (its watch brought the event): no read.
    const held = this.o.store.peek?.(event.job_id);
    if (held !== undefined && held.state === 'Queued' && held.attempt === event.attempt) {
      this.admit(held, this.now() + this.backoff(held.attempt));
      return;
    }
    this.lookups++;
    this.o.store
      .get(event.job_id)
      .then((record) => {
        if (record === undefined || record.state !== 'Queued' || this.queue.has(record.job_id, record.attempt)) return;
        this.admit(record, this.now() + this.backoff(record.attempt));
      })
      .catch((err: unknown) => this.o.logger.error({ err, job_id: event.job_id }, 'reading a queued job failed'))
      .finally(() => {
        this.lookups--;
        this.settleIdlers();
      });
  }

  /** How long attempt `attempt` waits after the one before it was withdrawn. */
  private backoff(attempt: number): number {
    const base = this.o.retryBackoffMs ?? 0;
    if (attempt <= 1 || base <= 0) return 0;
    return Math.min(base * 2 ** (attempt - 2), this.o.retryBackoffMaxMs ?? Number.POSITIVE_INFINITY);
  }

  private admit(record: JobRecord, notBefore: number): void {
    if (this.stopped) return;
    const bucket = this.queue.add(record, this.now(), notBefore);
    if (bucket !== undefined) this.dirtyBuckets.add(bucket);
    this.wake();
  }

  private nodeHasRoom(nodeId: string): void {
    this.dirtyNodes.add(nodeId);
    this.wake();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.pass();
      } while (this.again && !this.stopped);
    } catch (err) {
      this.o.logger.error({ err }, 'scheduling pass failed');
    } finally {
      this.running = false;
      this.settleIdlers();
    }
  }

  private settleIdlers(): void {
    if ((this.running || this.lookups > 0) && !this.stopped) return;
    const idlers = this.idlers;
    this.idlers = [];
    for (const resolve of idlers) resolve();
  }

  /** Decides every placement that is possible now, then waits for their assignments. */
  private async pass(): Promise<void> {
    const now = this.now();
    const work: Promise<void>[] = [];
    for (const job of this.queue.takeExpired(now)) work.push(this.expire(job));
    for (const bucket of this.queue.releaseDue(now)) this.dirtyBuckets.add(bucket);
    for (const nodeId of this.dirtyNodes) this.openBucketsFor(nodeId);
    this.dirtyNodes.clear();
    this.drainBuckets(work);
    this.armTimer(now);
    await Promise.all(work);
  }

  /** A node with new room reopens the buckets it could take from. */
  private openBucketsFor(nodeId: string): void {
    const entry = this.fleet.get(nodeId);
    if (entry?.free !== true) return;
    for (const bucket of this.queue.bucketsOffered(entry.cap)) {
      if (!this.dirtyBuckets.has(bucket) && this.fleet.canTake(entry, bucket.selector, bucket.need)) this.dirtyBuckets.add(bucket);
    }
  }

  /**
   * Open buckets (new jobs, or a node with new room could take them) place their heads, the
   * best head across them first, each on the node the policy picks, until no node fits any.
   */
  private drainBuckets(work: Promise<void>[]): void {
    // One entry per open bucket, its head: the loop below is all that changes heads meanwhile.
    const heads = new MinHeap<QueuedJob>((a, b) => ahead(a.record, b.record));
    for (const bucket of this.dirtyBuckets) {
      const head = bucket.head();
      if (head !== undefined) heads.push(head);
    }
    this.dirtyBuckets.clear();
    for (let best = heads.pop(); best !== undefined; best = heads.pop()) {
      const node = this.fleet.find(best.bucket.selector, best.bucket.need);
      if (node === undefined) continue; // closed: no node has room for this head, nor for the rest of its bucket
      work.push(this.place(best, node.cap.nodeId));
      const next = best.bucket.head();
      if (next !== undefined) heads.push(next);
    }
  }

  /** Takes the job out of the queue, counts it against the node, and assigns it. */
  private async place(queued: QueuedJob, nodeId: string): Promise<void> {
    const job = queued.record;
    this.queue.remove(job.job_id);
    const entry = this.fleet.get(nodeId)!;
    this.fleet.reserve(entry, job.job_id, queued.bucket.need);
    let assigned = false;
    try {
      assigned = await this.o.assign(job, nodeId);
    } catch (err) {
      this.o.logger.error({ err, job_id: job.job_id, node_id: nodeId }, 'assigning a job failed');
    }
    const hasRoom = this.fleet.release(nodeId, job.job_id);
    if (assigned) return;
    // Lost a race: the job may have left the queue (cancelled, or placed by another replica), or
    // the node gone. The store's own view when it holds one (a cluster replica's index, which the
    // refused assign was just decided on: a read would cost a NATS round trip), else a read.
    const fresh = this.o.store.peek?.(job.job_id) ?? (await this.o.store.get(job.job_id).catch(() => undefined));
    if (fresh?.state === 'Queued') {
      this.fleet.suspend(nodeId);
      this.admit(fresh, 0);
    } else if (hasRoom) {
      this.nodeHasRoom(nodeId);
    }
  }

  private async expire(job: JobRecord): Promise<void> {
    try {
      await this.o.expire(job);
    } catch (err) {
      this.o.logger.error({ err, job_id: job.job_id }, 'expiring a queued job failed');
    }
  }

  /** One timer, for the next deadline or end of a backoff. */
  private armTimer(now: number): void {
    const due = this.queue.nextDue();
    if (due === this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = due;
    if (due === undefined || this.stopped) return;
    this.timer = setTimeout(
      () => {
        this.timerAt = undefined;
        this.wake();
      },
      Math.min(Math.max(0, due - now), MAX_TIMER_MS),
    );
    this.timer.unref();
  }
}
