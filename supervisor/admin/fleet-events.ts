// The live fleet feed behind `GET /v1/events`: a snapshot of every node, then deltas. A change
// heard on the bus only marks its node (and job) dirty, O(1) however often a node flaps; every
// `flushMs` the dirty nodes are read once each and sent as one delta, so a flush costs O(nodes
// changed), not O(fleet). Each delta has a rising sequence number (the SSE `id`) and is kept in
// a bounded ring, so a client that reconnects with `Last-Event-ID` gets what it missed, or a fresh
// snapshot when that is gone. A client that reads slower than the feed is not buffered for: once
// its unsent bytes pass `clientBufferBytes` it gets no deltas, and a fresh snapshot once it drains.
//
// Sequence numbers start at the process's start time in milliseconds: a flush adds one at most
// every `flushMs`, so they rise across restarts too, and an id from an earlier process is always
// older than the ring: that client gets a snapshot, never a wrong replay.
//
// Nodes carry their `owner` replica. This replica reads the views of the nodes it holds; once
// other replicas publish their node changes on the bus, their views merge in by node id.
import type { ServerResponse } from 'node:http';
import type { Priority } from '../../protocol/messages.js';
import type { BusEvent } from '../bus/bus.js';
import type { JobState } from '../store/job-store.js';
import type { NodeView } from './wire-types.js';

/** What the feed reads: the plane's nodes and queue, and its bus. */
export interface FleetSource {
  /** Every node known (live, and dead ones still remembered). */
  listNodes(): NodeView[];
  /** One node as the list shows it; undefined once it is forgotten. */
  nodeView(nodeId: string): NodeView | undefined;
  /** Queued jobs by priority. */
  queueCounts(): Promise<Record<Priority, number>>;
  /** Calls `handler` for each bus event from now on; returns the unsubscribe function. */
  watchFleet(handler: (event: BusEvent) => void): () => void;
}

export interface FleetEventsOptions {
  /** How often dirty nodes are sent, coalesced to their latest state; default 200 ms. */
  flushMs?: number;
  /** How many recent deltas are kept for `Last-Event-ID`; default 512. */
  ringDeltas?: number;
  /** And at most how many bytes of them; default 8 MiB. */
  ringBytes?: number;
  /** Unsent bytes over which a client is dropped to a fresh snapshot; default 1 MiB. */
  clientBufferBytes?: number;
  /** Quiet time after which a comment keeps proxies from closing the stream. */
  keepaliveMs: number;
  /** False: no timer, the test calls `flush()`; default true. */
  timers?: boolean;
  /** Told when refreshing the queue counts fails (the store is down). */
  onError?: (err: unknown) => void;
}

/** One job's latest change in a delta. */
export interface JobChangeView {
  job_id: string;
  state: JobState;
  attempt: number;
  node_id?: string;
}

/** `event: snapshot` data. */
export interface FleetSnapshot {
  seq: number;
  nodes: NodeView[];
  queue: Record<Priority, number>;
}

/** `event: delta` data: nodes changed since the last delta (`removed`: forgotten), jobs changed, the queue when it changed. */
export interface FleetDelta {
  seq: number;
  nodes: NodeView[];
  removed: string[];
  jobs: JobChangeView[];
  queue?: Record<Priority, number>;
}

/** What the feed has done, for tests and for the cost argument above. */
export interface FleetEventCounters {
  /** Node views read and serialised (snapshots and deltas). */
  nodesSerialised: number;
  snapshots: number;
  deltas: number;
  /** Times a slow client was dropped to a fresh snapshot. */
  dropped: number;
  /** Resumes served from the ring. */
  replays: number;
}

const EMPTY_QUEUE: Record<Priority, number> = { Critical: 0, High: 0, Normal: 0, Low: 0 };

interface RingEntry {
  seq: number;
  text: string;
}

export class FleetEvents {
  readonly counters: FleetEventCounters = { nodesSerialised: 0, snapshots: 0, deltas: 0, dropped: 0, replays: 0 };
  #seq = Date.now();
  readonly #dirtyNodes = new Set<string>();
  readonly #dirtyJobs = new Map<string, JobChangeView>();
  #queue: Record<Priority, number> = { ...EMPTY_QUEUE };
  #queueChanged = false;
  #queueStale = true;
  #refreshing = false;
  readonly #ring: RingEntry[] = [];
  #ringBytes = 0;
  readonly #clients = new Set<FleetClient>();
  readonly #unsubscribe: () => void;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #o: Required<Omit<FleetEventsOptions, 'onError'>> & Pick<FleetEventsOptions, 'onError'>;

  constructor(
    private readonly source: FleetSource,
    options: FleetEventsOptions,
  ) {
    this.#o = { flushMs: 200, ringDeltas: 512, ringBytes: 8 * 1024 * 1024, clientBufferBytes: 1024 * 1024, timers: true, ...options };
    this.#unsubscribe = source.watchFleet((event) => this.heard(event));
    if (this.#o.timers) {
      this.#timers.push(setInterval(() => this.flush(), this.#o.flushMs).unref());
      this.#timers.push(setInterval(() => this.keepalive(), this.#o.keepaliveMs).unref());
    }
    void this.refreshQueue();
  }

  /** The sequence number of the last delta (or of the start). */
  get seq(): number {
    return this.#seq;
  }

  get clients(): number {
    return this.#clients.size;
  }

  /**
   * Streams the feed to `res` (headers already sent) until it closes: what was missed since
   * `lastEventId` when the ring still has it, else a snapshot; then every delta.
   */
  open(res: ServerResponse, lastEventId: string | undefined): void {
    const client: FleetClient = new FleetClient(res, this.#o.clientBufferBytes, {
      dropped: () => this.counters.dropped++,
      resync: () => this.resync(client),
    });
    this.#clients.add(client);
    res.once('close', () => this.#clients.delete(client));
    const replay = this.replayFrom(lastEventId);
    if (replay === undefined) {
      this.sendSnapshot(client);
      return;
    }
    this.counters.replays++;
    for (const entry of replay) client.send(entry.text);
  }

  /** Sends what changed since the last flush, if anything did. */
  flush(): void {
    // The queue counts are read only for someone to tell.
    if (this.#queueStale && this.#clients.size > 0) void this.refreshQueue();
    if (this.#dirtyNodes.size === 0 && this.#dirtyJobs.size === 0 && !this.#queueChanged) return;
    this.#seq++;
    if (this.#clients.size === 0) {
      // No one to tell, so nothing kept: a later resume from before this gets a snapshot.
      this.#dirtyNodes.clear();
      this.#dirtyJobs.clear();
      this.#queueChanged = false;
      this.#ring.length = 0;
      this.#ringBytes = 0;
      return;
    }
    const delta = this.takeDelta();
    const text = `id: ${delta.seq}\nevent: delta\ndata: ${JSON.stringify(delta)}\n\n`;
    this.counters.deltas++;
    this.keep({ seq: delta.seq, text });
    for (const client of this.#clients) client.send(text);
  }

  /** Ends every stream and stops listening to the bus. */
  close(): void {
    this.#unsubscribe();
    for (const timer of this.#timers) clearInterval(timer);
    for (const client of this.#clients) client.end();
    this.#clients.clear();
  }

  private heard(event: BusEvent): void {
    if (event.kind === 'node') {
      this.#dirtyNodes.add(event.node_id);
      return;
    }
    if (event.kind !== 'job') return;
    const change: JobChangeView = { job_id: event.job_id, state: event.state, attempt: event.attempt };
    if (event.node_id !== undefined) {
      change.node_id = event.node_id;
      // Its node's running jobs changed.
      this.#dirtyNodes.add(event.node_id);
    }
    this.#dirtyJobs.set(event.job_id, change);
    this.#queueStale = true;
  }

  private takeDelta(): FleetDelta {
    const nodes: NodeView[] = [];
    const removed: string[] = [];
    for (const nodeId of this.#dirtyNodes) {
      const view = this.source.nodeView(nodeId);
      this.counters.nodesSerialised++;
      if (view === undefined) removed.push(nodeId);
      else nodes.push(view);
    }
    const delta: FleetDelta = { seq: this.#seq, nodes, removed, jobs: [...this.#dirtyJobs.values()] };
    if (this.#queueChanged) delta.queue = this.#queue;
    this.#dirtyNodes.clear();
    this.#dirtyJobs.clear();
    this.#queueChanged = false;
    return delta;
  }

  /** The deltas after `lastEventId`, when the ring holds every one of them; undefined: send a snapshot. */
  private replayFrom(lastEventId: string | undefined): RingEntry[] | undefined {
    if (lastEventId === undefined || !/^\d{1,16}$/.test(lastEventId)) return undefined;
    const last = Number(lastEventId);
    if (last === this.#seq) return [];
    const oldest = this.#ring[0];
    if (last > this.#seq || oldest === undefined || oldest.seq > last + 1) return undefined;
    return this.#ring.filter((entry) => entry.seq > last);
  }

  private sendSnapshot(client: FleetClient): void {
    const nodes = this.source.listNodes();
    this.counters.nodesSerialised += nodes.length;
    this.counters.snapshots++;
    const snapshot: FleetSnapshot = { seq: this.#seq, nodes, queue: this.#queue };
    client.send(`id: ${this.#seq}\nevent: snapshot\ndata: ${JSON.stringify(snapshot)}\n\n`, true);
  }

  /** A dropped client drained: it starts again from a snapshot. */
  private resync(client: FleetClient): void {
    if (this.#clients.has(client)) this.sendSnapshot(client);
  }

  private keep(entry: RingEntry): void {
    this.#ring.push(entry);
    this.#ringBytes += entry.text.length;
    while (this.#ring.length > this.#o.ringDeltas || (this.#ringBytes > this.#o.ringBytes && this.#ring.length > 1)) {
      this.#ringBytes -= this.#ring.shift()!.text.length;
    }
  }

  private keepalive(): void {
    for (const client of this.#clients) client.send(':\n\n');
  }

  /** Reads the queue counts (at most one read at a time); a change goes out with the next delta. */
  private async refreshQueue(): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = true;
    this.#queueStale = false;
    try {
      const counts = await this.source.queueCounts();
      if ((Object.keys(counts) as Priority[]).some((p) => counts[p] !== this.#queue[p])) {
        this.#queue = counts;
        this.#queueChanged = true;
      }
    } catch (err) {
      this.#o.onError?.(err);
    } finally {
      this.#refreshing = false;
    }
  }
}

/** One stream: writes unless it is over its buffer, then waits for `drain` and asks for a snapshot. */
class FleetClient {
  #lagging = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly capBytes: number,
    private readonly on: { dropped(): void; resync(): void },
  ) {}

  /** `always`: a snapshot, written whatever is buffered (it replaces what was dropped). */
  send(text: string, always = false): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    if (!always && this.#lagging) return;
    if (!always && this.res.writableLength > this.capBytes) {
      this.#lagging = true;
      this.on.dropped();
      this.res.once('drain', () => {
        this.#lagging = false;
        this.on.resync();
      });
      return;
    }
    this.res.write(text);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
