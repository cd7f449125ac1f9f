// The view a replica has of its peers' leases in `muster-leases`: polled (the bucket's keys, then
// `get()` of each), since nats-server 2.9 sends no watch event when `max_age` removes a lease.
// A poll is a few requests, each with a timeout: the keys come from kv-key-list.ts, not from
// `kv.keys()`, which on a loaded server need not end while leases are being renewed, and one
// poll that does not end freezes the view (no new peer listed, no peer reported gone by a poll).
// A lease that is gone never comes back (a new lease of the same id has a new epoch), so "gone"
// is remembered for good.
// Peers missing from a poll are reported gone only while the replica may judge (lease-guard.ts):
// until then they stay "known", to be judged at the first poll when it may. A peer's lease a poll
// reads for the first time is told too (`onSeen`: the replica checks its cluster format).
import type { KV, KvEntry } from '@nats-io/kv';
import { liveValue } from './kv-cas.js';
import { TimerSet } from './timer-set.js';

/** The stored value of a lease. */
export interface LeaseValue {
  replica_id: string;
  /** Absent in the value written by `create` (its own revision is the epoch). */
  epoch?: number;
  started_at: string;
  renewed_at: string;
  node_count: number;
  version: string;
  /** The cluster format the replica reads and writes (cluster-format.ts); absent from builds before it. */
  format?: number;
}

/** A live lease, as the last poll read it. */
export interface PeerLease {
  id: string;
  epoch: number;
  /** The revision of its last renewal. */
  revision: number;
  startedAt: string;
  renewedAt: string;
  nodeCount: number;
  version: string;
  /** Its cluster format; undefined for a build from before cluster formats. */
  format: number | undefined;
}

/** The lease in a KV entry, or undefined when the entry is not a live lease. */
export function toPeer(entry: KvEntry | null | undefined): PeerLease | undefined {
  const value = liveValue(entry);
  if (!value || !entry) return undefined;
  return {
    id: entry.key,
    // The epoch is the revision of the `create` that took the lease.
    epoch: typeof value.epoch === 'number' ? value.epoch : entry.revision,
    revision: entry.revision,
    startedAt: String(value.started_at ?? ''),
    renewedAt: String(value.renewed_at ?? ''),
    nodeCount: typeof value.node_count === 'number' ? value.node_count : 0,
    version: String(value.version ?? ''),
    format: typeof value.format === 'number' ? value.format : undefined,
  };
}

const leaseKey = (id: string, epoch: number): string => `${id}#${epoch}`;

/**
 * nats-server removes an aged-out entry within a few ms of `stored + max_age` (measured on 2.9.10:
 * 3 to 14 ms late), so a wait reads a lease again just after the moment it should go, rather
 * than up to `gonePollMs` later; then quickly for a while, in case this clock and the server's
 * differ, and at `gonePollMs` after that.
 */
const AGE_OUT_SLACK_MS = 15;
const AFTER_AGE_OUT_POLL_MS = 50;
const AFTER_AGE_OUT_WINDOW_MS = 2_000;

export interface LeasePeersOptions {
  /** This replica's id (its own lease is never reported gone here). */
  selfId: string;
  /** The keys of the lease bucket, one bounded read (kv-key-list.ts). */
  listKeys: () => Promise<string[]>;
  /** How often all leases are read. */
  peerPollMs: number;
  /** How often a lease that `whenGone` waits on is read, at most (see `agesOutAt`). */
  gonePollMs: number;
  /** The bucket's `max_age`: a lease ages out this long after the server stored its last renewal. */
  ttlMs: number;
  /** The replica's own epoch now (its own lease is live by definition). */
  selfEpoch: () => number | undefined;
  /** May peers be reported gone now (lease-guard.ts)? */
  mayJudge: () => boolean;
  /** A peer's lease seen before is gone. */
  onGone: (id: string, epoch: number) => void;
  /** A peer's lease read by a poll for the first time (each id#epoch once). */
  onSeen?: (peer: PeerLease) => void;
  /** A poll failed; the next one tries again. */
  onError: (err: unknown) => void;
}

interface GoneWait {
  waiters: number;
  resolve: () => void;
  done: Promise<void>;
}

export class LeasePeers {
  private view = new Map<string, PeerLease>();
  /** Peers' leases seen and not yet judged gone, by id#epoch. */
  private known = new Map<string, PeerLease>();
  /** Leases known gone for good, by id#epoch. */
  private readonly gone = new Set<string>();
  private readonly goneWaits = new Map<string, GoneWait>();
  /** Lease reads in flight, by id#epoch. */
  private readonly reads = new Map<string, Promise<boolean>>();
  /** When (this clock, ms since the epoch) each live lease read should age out, by id#epoch. */
  private readonly agesOutAt = new Map<string, number>();
  /** Reads of single leases made by `isLive`, for tests and metrics. */
  leaseReads = 0;
  /** Ends every pending `whenGone` (false) when the view closes. */
  private readonly waitEnds = new Set<() => void>();
  private readonly timers = new TimerSet();
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private closed = false;

  constructor(
    private readonly kv: KV,
    private readonly o: LeasePeersOptions,
  ) {}

  /** Live leases as last read, keyed by replica id. */
  current(): ReadonlyMap<string, PeerLease> {
    return this.view;
  }

  /** Polls now (after a reconnect, or when judging becomes possible), then every `peerPollMs`. */
  pollSoon(): void {
    if (this.closed) return;
    this.cancel(this.pollTimer);
    this.pollTimer = this.after(0, () => void this.pollTick());
  }

  /** Records that a lease is gone for good (this replica's own, found lost). */
  markGone(id: string, epoch: number): void {
    this.gone.add(leaseKey(id, epoch));
  }

  /**
   * Is the lease of `id` at `epoch` still live? One read of the server unless known gone;
   * concurrent questions about one lease (a storm of claims of a dead replica's nodes) share it.
   */
  isLive(id: string, epoch: number): Promise<boolean> {
    if (id === this.o.selfId && epoch === this.o.selfEpoch()) return Promise.resolve(true);
    const key = leaseKey(id, epoch);
    if (this.gone.has(key)) return Promise.resolve(false);
    let read = this.reads.get(key);
    if (!read) {
      this.leaseReads += 1;
      read = this.kv.get(id).then((entry) => {
        const peer = toPeer(entry);
        if (peer && entry && peer.epoch === epoch) {
          // The entry's time is the server's, when it stored the renewal: the age-out counts from it.
          this.agesOutAt.set(key, entry.created.getTime() + this.o.ttlMs);
          return true;
        }
        this.gone.add(key);
        this.agesOutAt.delete(key);
        return false;
      });
      const forget = (): void => void this.reads.delete(key);
      read.then(forget, forget);
      this.reads.set(key, read);
    }
    return read;
  }

  /**
   * Resolves true once the lease of `id` at `epoch` is gone, false after `timeoutMs`. Waiters
   * on one lease share one poll, so a takeover of 3,000 nodes reads each dead lease once a poll.
   */
  whenGone(id: string, epoch: number, timeoutMs: number): Promise<boolean> {
    const key = leaseKey(id, epoch);
    if (this.gone.has(key) || this.closed) return Promise.resolve(this.gone.has(key));
    let wait = this.goneWaits.get(key);
    if (!wait) {
      let resolveDone: () => void = () => {};
      const done = new Promise<void>((r) => (resolveDone = r));
      wait = { waiters: 1, resolve: resolveDone, done };
      this.goneWaits.set(key, wait);
      void this.pollGone(id, epoch, wait);
    } else {
      wait.waiters += 1;
    }
    const current = wait;
    return new Promise<boolean>((resolveWait) => {
      const timer = this.after(timeoutMs, () => finish(false));
      const end = (): void => finish(false);
      const finish = (result: boolean): void => {
        if (!this.waitEnds.delete(end)) return;
        this.cancel(timer);
        current.waiters -= 1;
        resolveWait(result);
      };
      this.waitEnds.add(end);
      void current.done.then(() => finish(true));
    });
  }

  close(): void {
    this.closed = true;
    this.timers.clear();
    for (const end of [...this.waitEnds]) end();
  }

  private async pollTick(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.poll();
    } catch (err) {
      this.o.onError(err);
    } finally {
      this.polling = false;
    }
    if (this.closed) return;
    this.cancel(this.pollTimer);
    this.pollTimer = this.after(this.o.peerPollMs, () => void this.pollTick());
  }

  /** Every live lease now, this replica's own included: one bounded read of the keys, then each. */
  async readAll(): Promise<PeerLease[]> {
    const ids = await this.o.listKeys();
    const entries = await Promise.all(ids.map((id) => this.kv.get(id)));
    return entries.map((entry) => toPeer(entry)).filter((peer): peer is PeerLease => peer !== undefined);
  }

  private async poll(): Promise<void> {
    const view = new Map<string, PeerLease>();
    for (const peer of await this.readAll()) view.set(peer.id, peer);
    if (this.closed) return;
    const previous = this.view;
    this.view = view;
    this.tellSeen(previous, view);
    this.judge(view);
  }

  /** `onSeen` for each peer's lease this poll read and the one before did not (a new id, or a new epoch). */
  private tellSeen(previous: Map<string, PeerLease>, view: Map<string, PeerLease>): void {
    for (const peer of view.values()) {
      if (peer.id !== this.o.selfId && previous.get(peer.id)?.epoch !== peer.epoch) this.o.onSeen?.(peer);
    }
  }

  /** Peers seen before and missing now are gone; judged only while the replica may judge. */
  private judge(view: Map<string, PeerLease>): void {
    const current = new Map<string, PeerLease>();
    for (const peer of view.values()) {
      const key = leaseKey(peer.id, peer.epoch);
      // Known gone (a wait read it after this poll's read): never reported twice.
      if (peer.id !== this.o.selfId && !this.gone.has(key)) current.set(key, peer);
    }
    if (!this.o.mayJudge()) {
      for (const [key, peer] of current) this.known.set(key, peer);
      return;
    }
    for (const [key, peer] of this.known) {
      if (current.has(key)) continue;
      this.gone.add(key);
      this.o.onGone(peer.id, peer.epoch);
    }
    this.known = current;
  }

  private async pollGone(id: string, epoch: number, wait: GoneWait): Promise<void> {
    while (!this.closed && wait.waiters > 0) {
      try {
        if (!(await this.isLive(id, epoch))) {
          wait.resolve();
          this.reportGone(leaseKey(id, epoch));
          break;
        }
      } catch {
        // NATS unreachable: try again at the next poll.
      }
      await new Promise<void>((r) => this.after(this.nextGoneRead(leaseKey(id, epoch)), r));
    }
    this.goneWaits.delete(leaseKey(id, epoch));
  }

  /**
   * A wait saw a lease go that a poll saw live: reported now (not at the next poll, up to
   * `peerPollMs` later), if the replica may judge; else the poll reports it when it may.
   */
  private reportGone(key: string): void {
    const peer = this.known.get(key);
    if (peer === undefined || this.closed || !this.o.mayJudge()) return;
    this.known.delete(key);
    this.o.onGone(peer.id, peer.epoch);
  }

  /** How long a wait sleeps before it reads the lease again: until just after its age-out when that comes first. */
  private nextGoneRead(key: string): number {
    const at = this.agesOutAt.get(key);
    if (at === undefined) return this.o.gonePollMs;
    const late = Date.now() - at;
    if (late < 0) return Math.min(this.o.gonePollMs, -late + AGE_OUT_SLACK_MS);
    return late < AFTER_AGE_OUT_WINDOW_MS ? Math.min(this.o.gonePollMs, AFTER_AGE_OUT_POLL_MS) : this.o.gonePollMs;
  }

  private after(delayMs: number, fn: () => void): NodeJS.Timeout {
    return this.timers.after(delayMs, fn);
  }

  private cancel(timer: NodeJS.Timeout | undefined): void {
    this.timers.cancel(timer);
  }
}
