// Which replica owns each node (issue 10 item 4): one entry per node in KV bucket
// `muster-owners` (key = node id; value: owner replica id, the owner's lease epoch, claimed_at),
// written only by compare-and-set and only when the node changes hands. While nothing changes
// hands this costs nothing: no per-node renewal (the owner's one lease stands for all its
// nodes), and a claim of a node this replica already owns under its current epoch is one read.
//
// The fencing token of a node is the revision of its entry when its current owner claimed it
// (cluster-design.md): the bucket stream's sequence, so a later claim always has a higher one.
//
// A node changes hands only when (a) its entry is free, (b) the owner named in it has lost the
// lease of the epoch named in it (a lease once gone never comes back; replica-lease.ts), or
// (c) the live owner released it on request (`requestRelease`, over the command channel).
// A watch on the bucket (a hint: kv-watch-hint.ts) tells this replica when a node it thinks it
// owns was taken: `lost` → the plane closes that session with `session_replaced`.
import type { NatsConnection } from '@nats-io/nats-core';
import type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
import { MusterError } from '../../protocol/errors.js';
import { isKvKey, KV_KEY, liveValue, openCasBucket } from './kv-cas.js';
import { isWrongLast } from './jetstream-errors.js';
import { KvWatchHint } from './kv-watch-hint.js';
import type { ReplicaLease } from './replica-lease.js';

export const OWNERS_BUCKET = 'muster-owners';

/** The stored value of an ownership entry. */
export interface OwnerValue {
  owner: string;
  epoch: number;
  claimed_at: string;
}

/** What ownership needs of the replica's lease (ReplicaLease provides it). */
export type OwnershipLease = Pick<ReplicaLease, 'replicaId' | 'epoch' | 'ttlMs' | 'isFenced' | 'isLive' | 'whenGone' | 'subscribe'>;

/** The live owner's answer to a release request; a request that gets no answer rejects. */
export type ReleaseAnswer = 'released' | 'refused';

/** Asks replica `owner` to release `nodeId` (it closes its session, then calls `release`). */
export type RequestRelease = (owner: string, nodeId: string, token: number) => Promise<ReleaseAnswer>;

export interface Claim {
  /** The fencing token of every job write for this node while this replica owns it. */
  token: number;
  /** False when the node was already this replica's under its current epoch (nothing written). */
  written: boolean;
  /** The owner the node was taken from: a takeover, to which the grace of rule 8 applies. */
  previous?: { owner: string; epoch: number; token: number };
}

export type OwnershipEvent =
  /** A node this replica owned is no longer its: close its session (`session_replaced`). */
  | { kind: 'lost'; node_id: string; token: number; reason: 'taken' | 'lease-lost'; by?: string }
  | { kind: 'error'; error: unknown };

/** Counts of this replica's ownership operations on NATS, for metrics and tests. */
export interface OwnershipStats {
  /** Entry reads by claims. */
  reads: number;
  /** Compare-and-set writes that landed (claims and releases). */
  writes: number;
  /** Compare-and-set writes refused because another writer changed the entry first. */
  conflicts: number;
}

export interface NodeOwnershipOptions {
  /** The replica's NATS connection (the same one as its lease's). */
  nc: NatsConnection;
  /** This replica's lease: its id, epoch, fencing and its view of peers' leases. */
  lease: OwnershipLease;
  /** How a claim asks a live owner to let a node go (the command channel). */
  requestRelease: RequestRelease;
  /** Default `muster-owners`. */
  bucket?: string;
  /** Copies of the bucket (1; more only on nats-server 2.9.21 or later). */
  replicas?: number;
  /** How long a claim waits for a live owner to release or its lease to go (default 2 × TTL). */
  claimTimeoutMs?: number;
  /** How often the watch is checked against the stream's last sequence (default 5,000). */
  reconcileMs?: number;
}

function ownerValue(entry: KvEntry | null | undefined): OwnerValue | undefined {
  const value = liveValue(entry);
  if (!value || typeof value.owner !== 'string' || typeof value.epoch !== 'number') return undefined;
  return { owner: value.owner, epoch: value.epoch, claimed_at: String(value.claimed_at ?? '') };
}

export class NodeOwnership {
  /** Nodes this replica owns, with their tokens. */
  private readonly owned = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<Claim>>();
  /** The latest watch entry of a node while a claim of it is in flight: a taker may beat our ack. */
  private readonly seenDuringClaim = new Map<string, KvWatchEntry>();
  private readonly handlers = new Set<(event: OwnershipEvent) => void>();
  private readonly counts: OwnershipStats = { reads: 0, writes: 0, conflicts: 0 };
  private watch: KvWatchHint | undefined;
  private unsubscribeLease: (() => void) | undefined;
  private closed = false;
  private readonly claimTimeoutMs: number;
  private readonly reconcileMs: number;

  private constructor(
    private readonly kv: KV,
    private readonly o: NodeOwnershipOptions,
  ) {
    this.claimTimeoutMs = o.claimTimeoutMs ?? 2 * o.lease.ttlMs;
    this.reconcileMs = o.reconcileMs ?? 5_000;
  }

  static async open(options: NodeOwnershipOptions): Promise<NodeOwnership> {
    const kv = await openCasBucket(options.nc, { bucket: options.bucket ?? OWNERS_BUCKET, replicas: options.replicas ?? 1, ttlMs: 0 });
    const ownership = new NodeOwnership(kv, options);
    ownership.watch = await KvWatchHint.start({
      nc: options.nc,
      kv,
      checkMs: ownership.reconcileMs,
      onEntry: (entry) => ownership.onWatchEntry(entry),
      onError: (error) => ownership.emit({ kind: 'error', error }),
    });
    ownership.unsubscribeLease = options.lease.subscribe((event) => {
      if (event.kind === 'lease-lost') ownership.loseAll();
    });
    return ownership;
  }

  /** The token of a node this replica owns, or undefined. */
  tokenOf(nodeId: string): number | undefined {
    return this.owned.get(nodeId);
  }

  ownedCount(): number {
    return this.owned.size;
  }

  stats(): OwnershipStats {
    return { ...this.counts };
  }

  /** The stored owner of a node (a read), for the API. */
  async ownerOf(nodeId: string): Promise<(OwnerValue & { token: number }) | undefined> {
    const entry = await this.kv.get(nodeId);
    const value = ownerValue(entry);
    return value && entry ? { ...value, token: entry.revision } : undefined;
  }

  subscribe(handler: (event: OwnershipEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /**
   * Makes this replica the owner of `nodeId` (it registered or resumed here) and returns the
   * fencing token. Rejects (`shutting_down`) when this replica is fenced, when the live owner
   * refuses to release the node, or when it neither releases it nor loses its lease in time.
   * Claims of one node on this replica run one after another.
   */
  claim(nodeId: string): Promise<Claim> {
    if (!isKvKey(nodeId)) {
      return Promise.reject(new MusterError('internal', `node id "${nodeId}" cannot be a key of ${OWNERS_BUCKET} (allowed: ${KV_KEY})`));
    }
    const before = this.inflight.get(nodeId) ?? Promise.resolve(undefined);
    const next = before
      .catch(() => undefined)
      .then(() => this.claimNow(nodeId))
      .catch((err: unknown) => {
        if (err instanceof MusterError) throw err;
        throw new MusterError('shutting_down', `replica ${this.o.lease.replicaId} cannot claim node ${nodeId} now (NATS)`, { cause: err });
      });
    this.inflight.set(nodeId, next);
    const forget = (): void => {
      if (this.inflight.get(nodeId) !== next) return;
      this.inflight.delete(nodeId);
      this.seenDuringClaim.delete(nodeId);
    };
    next.then(forget, forget);
    return next;
  }

  /**
   * Takes a node whose owner is gone (its replica died and the node came back to none), for its
   * jobs: only when the entry names no live lease, and never by asking anyone to release it.
   * Undefined when the node is live elsewhere, already this replica's, being claimed here, or
   * another replica took it first.
   */
  async claimOrphan(nodeId: string): Promise<Claim | undefined> {
    if (!isKvKey(nodeId) || this.inflight.has(nodeId) || this.owned.has(nodeId)) return undefined;
    const epoch = this.currentEpoch(nodeId);
    const entry = await this.kv.get(nodeId);
    this.counts.reads += 1;
    const value = ownerValue(entry);
    if (!entry || !value) return undefined; // free: nothing to take over
    if (value.owner === this.o.lease.replicaId && value.epoch === epoch) return undefined;
    if (await this.o.lease.isLive(value.owner, value.epoch)) return undefined;
    if (this.inflight.has(nodeId) || this.owned.has(nodeId)) return undefined; // the node arrived meanwhile
    const body = JSON.stringify({ owner: this.o.lease.replicaId, epoch, claimed_at: new Date().toISOString() } satisfies OwnerValue);
    let token: number;
    try {
      token = await this.kv.update(nodeId, body, entry.revision);
      this.counts.writes += 1;
    } catch (err) {
      if (!isWrongLast(err)) throw err;
      this.counts.conflicts += 1;
      return undefined;
    }
    this.adopt(nodeId, token, epoch);
    return { token, written: true, previous: { owner: value.owner, epoch: value.epoch, token: entry.revision } };
  }

  /**
   * Gives a node up (its old owner, on request, after closing its session): a delete at the
   * token's revision. False when the entry is no longer at that revision (not ours to give).
   */
  async release(nodeId: string, token: number): Promise<boolean> {
    if (this.owned.get(nodeId) === token) this.owned.delete(nodeId);
    try {
      await this.kv.delete(nodeId, { previousSeq: token });
      this.counts.writes += 1;
      return true;
    } catch (err) {
      if (isWrongLast(err)) {
        this.counts.conflicts += 1;
        return false;
      }
      throw err;
    }
  }

  /**
   * The owner's side of a release request, for the command channel: after the plane closed the
   * node's session (`session_replaced`), give the entry up at `token` if it is still there.
   * Always `released`: if the entry moved meanwhile, the claimer reads it again and decides anew.
   */
  async answerRelease(nodeId: string, token = this.tokenOf(nodeId)): Promise<ReleaseAnswer> {
    if (token === undefined) {
      // Not in the cache (a request without a token for a node this replica does not know it
      // holds): give it up only if the stored entry names this replica's current epoch.
      const entry = await this.kv.get(nodeId);
      if (!entry || !this.isOurs(entry)) return 'released';
      token = entry.revision;
    }
    await this.release(nodeId, token);
    return 'released';
  }

  /** Reads every owned entry and reports those taken: a full reconcile (one read per owned node). */
  async verify(): Promise<void> {
    for (const [nodeId, token] of [...this.owned]) {
      const entry = await this.kv.get(nodeId);
      if (entry && entry.revision === token) continue;
      if (this.owned.get(nodeId) !== token) continue;
      this.owned.delete(nodeId);
      this.emit({ kind: 'lost', node_id: nodeId, token, reason: 'taken', by: ownerValue(entry)?.owner });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribeLease?.();
    await this.watch?.close();
    this.handlers.clear();
  }

  private emit(event: OwnershipEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch {
        // A failing listener must not stop the watch.
      }
    }
  }

  private currentEpoch(nodeId: string): number {
    const epoch = this.o.lease.epoch;
    if (epoch === undefined || this.o.lease.isFenced()) {
      throw new MusterError('shutting_down', `replica ${this.o.lease.replicaId} is fenced (no live lease): it cannot take node ${nodeId}`);
    }
    return epoch;
  }

  private async claimNow(nodeId: string): Promise<Claim> {
    const self = this.o.lease.replicaId;
    const deadline = Date.now() + this.claimTimeoutMs;
    let released: Claim['previous'];
    for (;;) {
      if (Date.now() > deadline) {
        throw new MusterError('shutting_down', `node ${nodeId}: no claim landed in ${this.claimTimeoutMs} ms (its entry kept changing)`);
      }
      const epoch = this.currentEpoch(nodeId);
      const entry = await this.kv.get(nodeId);
      this.counts.reads += 1;
      const value = ownerValue(entry);
      if (entry && value && value.owner === self && value.epoch === epoch) {
        this.adopt(nodeId, entry.revision, epoch);
        return { token: entry.revision, written: false };
      }
      const previous = entry && value ? { owner: value.owner, epoch: value.epoch, token: entry.revision } : undefined;
      // Our own entry from an older epoch: that lease is gone, as is any other of a lost epoch.
      if (previous && previous.owner !== self && (await this.o.lease.isLive(previous.owner, previous.epoch))) {
        if (await this.awaitRelease(nodeId, previous, deadline)) released = previous;
        continue;
      }
      const body = JSON.stringify({ owner: self, epoch, claimed_at: new Date().toISOString() } satisfies OwnerValue);
      let token: number;
      try {
        token = entry ? await this.kv.update(nodeId, body, entry.revision) : await this.kv.create(nodeId, body);
        this.counts.writes += 1;
      } catch (err) {
        if (!isWrongLast(err)) throw err;
        this.counts.conflicts += 1;
        continue; // another writer changed it first: decide again
      }
      this.adopt(nodeId, token, epoch);
      const from = previous ?? released;
      return from ? { token, written: true, previous: from } : { token, written: true };
    }
  }

  /** The node belongs to a live replica: ask it to let go (true: it did), or wait for its lease to go. */
  private async awaitRelease(nodeId: string, previous: NonNullable<Claim['previous']>, deadline: number): Promise<boolean> {
    let answer: ReleaseAnswer | undefined;
    try {
      answer = await this.o.requestRelease(previous.owner, nodeId, previous.token);
    } catch {
      answer = undefined; // no answer: the owner may be dead, its lease will tell
    }
    if (answer === 'refused') {
      throw new MusterError('shutting_down', `node ${nodeId} is owned by live replica ${previous.owner}, which refused to release it`);
    }
    if (answer === 'released') return true;
    const gone = await this.o.lease.whenGone(previous.owner, previous.epoch, Math.max(0, deadline - Date.now()));
    if (!gone) {
      throw new MusterError(
        'shutting_down',
        `node ${nodeId} is owned by replica ${previous.owner}, which did not release it, and its lease (epoch ${previous.epoch}) is still live after ${this.claimTimeoutMs} ms`,
      );
    }
    return false;
  }

  /** Records a claimed node; if the watch already saw it taken past `token`, it is lost at once. */
  private adopt(nodeId: string, token: number, epoch: number): void {
    // The lease was lost while the claim was in flight: the entry names a dead epoch.
    if (this.o.lease.epoch !== epoch) {
      throw new MusterError('shutting_down', `replica ${this.o.lease.replicaId} lost its lease while claiming node ${nodeId}`);
    }
    this.owned.set(nodeId, token);
    const seen = this.seenDuringClaim.get(nodeId);
    if (seen && seen.revision > token && !this.isOurs(seen)) queueMicrotask(() => this.taken(nodeId, seen));
  }

  private isOurs(entry: KvEntry): boolean {
    const value = ownerValue(entry);
    return value !== undefined && value.owner === this.o.lease.replicaId && value.epoch === this.o.lease.epoch;
  }

  private taken(nodeId: string, entry: KvEntry): void {
    const token = this.owned.get(nodeId);
    if (token === undefined || entry.revision <= token) return;
    this.owned.delete(nodeId);
    this.emit({ kind: 'lost', node_id: nodeId, token, reason: 'taken', by: ownerValue(entry)?.owner });
  }

  private onWatchEntry(entry: KvWatchEntry): void {
    if (this.inflight.has(entry.key)) {
      const before = this.seenDuringClaim.get(entry.key);
      if (!before || before.revision < entry.revision) this.seenDuringClaim.set(entry.key, entry);
    }
    if (this.owned.has(entry.key) && !this.isOurs(entry)) this.taken(entry.key, entry);
  }

  /** Everything owned was owned under the lost epoch. */
  private loseAll(): void {
    const owned = [...this.owned];
    this.owned.clear();
    for (const [nodeId, token] of owned) this.emit({ kind: 'lost', node_id: nodeId, token, reason: 'lease-lost' });
  }
}
