// A replica's one lease in KV bucket `muster-leases` (issue 10 item 4): its liveness for the
// cluster, at a cost of one write per `renewMs` whatever the size of the fleet.
//
// - Taken with `create` (key = replica id): its revision is the replica's epoch, which only
//   rises (a KV revision is the bucket stream's sequence). An existing live key of the same id
//   is refused: two processes with one replica id.
// - Renewed with `update` at the last revision every `renewMs`; aged out by the bucket's
//   `max_age` (= `ttlMs`) when not renewed. 2.9 has no per-message TTL and sends no watch event
//   for an age-out, so peers are polled (the stream's subjects + `get()`: lease-peers.ts).
// - Self-fencing and the judging of peers follow lease-guard.ts: `fenced` before
//   `ttlMs - marginMs` without an acknowledged renewal; `mayJudge()` only after a full TTL
//   connected and unfenced.
// - A lease found gone (aged out while the replica was cut off) is taken again with a new,
//   higher epoch: everything owned under the old one is lost (node-ownership.ts listens).
// - The value says which build holds it: Muster's version and the cluster format
//   (cluster-format.ts); a peer first read with another format is told (`peer-format`), and
//   format-guard.ts reads every lease once at start.
import { performance } from 'node:perf_hooks';
import type { NatsConnection, Status } from '@nats-io/nats-core';
import type { KV } from '@nats-io/kv';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { MusterError } from '../../protocol/errors.js';
import { DEFAULTS } from '../config.js';
import { isKvKey, KV_KEY, openCasBucket } from './kv-cas.js';
import { isWrongLast } from './jetstream-errors.js';
import { listKvKeys } from './kv-key-list.js';
import { LeaseGuard } from './lease-guard.js';
import { LeasePeers, toPeer, type LeaseValue, type PeerLease } from './lease-peers.js';
import { TimerSet } from './timer-set.js';
import { CLUSTER_FORMAT } from './cluster-format.js';

export const LEASE_BUCKET = 'muster-leases';

export type LeaseEvent =
  /** A renewal was acknowledged. */
  | { kind: 'renewed'; revision: number; tookMs: number }
  /** Stop dispatching and writing; close the nodes with `shutting_down`. */
  | { kind: 'fenced'; reason: 'renewal-overdue' | 'lease-lost' }
  /** Renewals are acknowledged again under `epoch`. */
  | { kind: 'unfenced'; epoch: number }
  /** The lease of `epoch` is gone for good: everything owned under it is lost. */
  | { kind: 'lease-lost'; epoch: number }
  /** A new lease was taken after a loss. */
  | { kind: 'lease-taken'; epoch: number }
  /** Another process holds a live lease under this replica's id. */
  | { kind: 'conflict'; error: MusterError }
  /** A peer's lease, first read, announces another cluster format than this replica's (or none: an older build). */
  | { kind: 'peer-format'; peer: PeerLease }
  /** A peer's lease of `epoch` aged out (or was given up); sent only while `mayJudge()`. */
  | { kind: 'peer-gone'; id: string; epoch: number }
  /** `mayJudge()` changed. */
  | { kind: 'judging'; may: boolean }
  /** A NATS operation of the lease failed (logged by the caller; the deadlines decide). */
  | { kind: 'error'; error: unknown };

export interface ReplicaLeaseOptions {
  /** The replica's NATS connection (reconnecting; the lease follows its status). */
  nc: NatsConnection;
  /** The lease's key: `controlPlaneId`, a valid KV key (a hostname with dots is one). */
  replicaId: string;
  /** Muster's version, stored in the lease. */
  version: string;
  /** The cluster format stored in the lease (default cluster-format.ts's; tests write others). */
  format?: number;
  /** Default `muster-leases`. */
  bucket?: string;
  /** Copies of the bucket (1; more only on nats-server 2.9.21 or later). */
  replicas?: number;
  /** The bucket's `max_age`: a lease not renewed for this long is gone (default config.ts's `leaseTtlMs`). */
  ttlMs?: number;
  /** How often the lease is renewed (default config.ts's `leaseRenewMs`; below `ttlMs - marginMs`). */
  renewMs?: number;
  /** How long before the TTL the replica fences itself (default TTL / 5). */
  marginMs?: number;
  /** How often peers' leases are read (default `renewMs`). */
  peerPollMs?: number;
  /** How often `whenGone` reads a lease it waits on (default `renewMs` / 4, at least 50). */
  gonePollMs?: number;
  /** The timeout of one renewal (default the lesser of `renewMs` and 2,000). */
  requestTimeoutMs?: number;
  /** The number of nodes this replica serves, stored in the lease. */
  nodeCount?: () => number;
  /** A monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

type Resolved = Required<ReplicaLeaseOptions>;

function resolve(options: ReplicaLeaseOptions): Resolved {
  const ttlMs = options.ttlMs ?? DEFAULTS.leaseTtlMs;
  const renewMs = options.renewMs ?? DEFAULTS.leaseRenewMs;
  const marginMs = options.marginMs ?? Math.round(ttlMs / 5);
  const resolved: Resolved = {
    bucket: LEASE_BUCKET,
    replicas: 1,
    format: CLUSTER_FORMAT,
    peerPollMs: renewMs,
    gonePollMs: Math.max(50, Math.round(renewMs / 4)),
    requestTimeoutMs: Math.min(renewMs, 2_000),
    nodeCount: () => 0,
    now: () => performance.now(),
    ...options,
    ttlMs,
    renewMs,
    marginMs,
  };
  if (!isKvKey(options.replicaId)) {
    throw new MusterError('internal', `replica id "${options.replicaId}" cannot be a key of the lease bucket (allowed: ${KV_KEY})`);
  }
  if (!(renewMs > 0 && renewMs < ttlMs - marginMs)) {
    throw new MusterError(
      'internal',
      `lease renewal every ${renewMs} ms must be shorter than the TTL ${ttlMs} ms less the margin ${marginMs} ms`,
    );
  }
  return resolved;
}

function conflictError(id: string, existing: PeerLease | undefined, ttlMs: number): MusterError {
  const held = existing
    ? ` (epoch ${existing.epoch}, started ${existing.startedAt}, renewed ${existing.renewedAt}, version ${existing.version})`
    : '';
  return new MusterError(
    'internal',
    `replica id ${id} already holds a live lease${held}: two processes with one replica id? ` +
      `Give each replica its own --control-plane-id, or wait ${ttlMs} ms for a dead one's lease to age out`,
  );
}

export class ReplicaLease {
  readonly replicaId: string;
  private readonly guard: LeaseGuard;
  private readonly handlers = new Set<(event: LeaseEvent) => void>();
  private readonly startedAt = new Date().toISOString();
  private epochValue: number | undefined;
  private revision = 0;
  private readonly view: LeasePeers;
  private readonly timers = new TimerSet();
  private renewTimer: NodeJS.Timeout | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private judgeTimer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private renewAgain = false;
  private judging = false;
  private conflicted = false;
  private started = false;
  private closed = false;
  private statusIterator: AsyncIterable<Status> | undefined;

  private constructor(
    private readonly kv: KV,
    jsm: JetStreamManager,
    private readonly o: Resolved,
  ) {
    this.replicaId = o.replicaId;
    this.guard = new LeaseGuard({ ttlMs: o.ttlMs, marginMs: o.marginMs });
    this.view = new LeasePeers(kv, {
      selfId: o.replicaId,
      listKeys: () => listKvKeys(jsm, o.bucket),
      peerPollMs: o.peerPollMs,
      gonePollMs: o.gonePollMs,
      ttlMs: o.ttlMs,
      selfEpoch: () => this.epochValue,
      mayJudge: () => this.mayJudge(),
      onGone: (id, epoch) => this.emit({ kind: 'peer-gone', id, epoch }),
      onSeen: (peer) => {
        if (peer.format !== o.format) this.emit({ kind: 'peer-format', peer });
      },
      onError: (error) => this.emit({ kind: 'error', error }),
    });
  }

  /** Opens the bucket and takes the lease; rejects when another process holds this id. */
  static async acquire(options: ReplicaLeaseOptions): Promise<ReplicaLease> {
    const o = resolve(options);
    const kv = await openCasBucket(o.nc, { bucket: o.bucket, replicas: o.replicas, ttlMs: o.ttlMs });
    // No account check: opening the bucket just used JetStream.
    const jsm = await jetstreamManager(o.nc, { checkAPI: false });
    const lease = new ReplicaLease(kv, jsm, o);
    lease.acknowledged(await lease.take());
    lease.start();
    return lease;
  }

  /** The current epoch; undefined while the lease is lost and not yet taken again. */
  get epoch(): number | undefined {
    return this.epochValue;
  }

  get ttlMs(): number {
    return this.o.ttlMs;
  }

  /** The cluster format this replica announces. */
  get format(): number {
    return this.o.format;
  }

  /**
   * Fenced: no dispatch, no write. Checks the deadline itself rather than trusting the fence
   * timer, which a blocked event loop runs late: a caller that asks after a stall gets the truth.
   */
  isFenced(): boolean {
    if (!this.closed && this.guard.checkFence(this.o.now())) this.fenceOverdue();
    return this.guard.isFenced();
  }

  /** May this replica declare nodes dead or requeue their jobs now? */
  mayJudge(): boolean {
    return this.guard.mayJudge(this.o.now());
  }

  /** Live leases as last read, this replica's own included. */
  peers(): PeerLease[] {
    const view = this.view.current();
    const peers = [...view.values()].filter((p) => p.id !== this.replicaId);
    if (this.epochValue !== undefined) {
      peers.push({
        id: this.replicaId,
        epoch: this.epochValue,
        revision: this.revision,
        startedAt: this.startedAt,
        renewedAt: view.get(this.replicaId)?.renewedAt ?? this.startedAt,
        nodeCount: this.o.nodeCount(),
        version: this.o.version,
        format: this.o.format,
      });
    }
    return peers.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Every live lease now, read from the server (not the last poll's): format-guard.ts at start. */
  readLeases(): Promise<PeerLease[]> {
    return this.view.readAll();
  }

  subscribe(handler: (event: LeaseEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Reads of single peers' leases so far (claims and waits; polls not counted), for tests and metrics. */
  get leaseReads(): number {
    return this.view.leaseReads;
  }

  /** Is the lease of `id` at `epoch` still live? A lease once gone never comes back. */
  isLive(id: string, epoch: number): Promise<boolean> {
    return this.view.isLive(id, epoch);
  }

  /** Resolves true once the lease of `id` at `epoch` is gone, false after `timeoutMs` (see LeasePeers). */
  whenGone(id: string, epoch: number, timeoutMs: number): Promise<boolean> {
    return this.view.whenGone(id, epoch, timeoutMs);
  }

  /** Stops renewing; with `release` (the default) gives the lease up so that peers take over at once. */
  /**
   * Stops renewing; with `release` (the default) gives the lease up, so that the replica's nodes
   * may be claimed at once: 'released' when the delete landed. 'aging-out' when the lease is left
   * to age out after its TTL: not released, the delete failed, or the connection is away (then
   * nothing is sent: a delete, and the renewal in flight, would only wait for NATS to come back
   * or for their timeouts, holding a replica's shutdown for seconds while a dead one's nodes
   * wait for the age-out either way).
   */
  async close(options: { release?: boolean } = {}): Promise<'released' | 'aging-out'> {
    if (this.closed) return 'aging-out';
    this.closed = true;
    this.timers.clear();
    const iterator = this.statusIterator as { stop?: () => void } | undefined;
    iterator?.stop?.();
    this.view.close();
    this.handlers.clear();
    if (!(options.release ?? true) || this.epochValue === undefined || !this.guard.isConnected()) return 'aging-out';
    await this.renewing; // a renewal in flight would otherwise move the revision under the delete
    try {
      await this.kv.delete(this.replicaId, { previousSeq: this.revision });
      return 'released';
    } catch {
      return 'aging-out';
    }
  }

  private emit(event: LeaseEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch {
        // A failing listener must not stop the renewals.
      }
    }
  }

  private value(epoch: number | undefined): string {
    const value: LeaseValue = {
      replica_id: this.replicaId,
      started_at: this.startedAt,
      renewed_at: new Date().toISOString(),
      node_count: this.o.nodeCount(),
      version: this.o.version,
      format: this.o.format,
    };
    if (epoch !== undefined) value.epoch = epoch;
    return JSON.stringify(value);
  }

  /** `create`: the first lease, or a new one after a loss. Returns when the create was sent. */
  private async take(): Promise<number> {
    const sentAt = this.o.now();
    try {
      const revision = await this.kv.create(this.replicaId, this.value(undefined));
      this.epochValue = revision;
      this.revision = revision;
      return sentAt;
    } catch (err) {
      if (!isWrongLast(err)) throw err;
      const existing = toPeer(await this.kv.get(this.replicaId));
      throw conflictError(this.replicaId, existing, this.o.ttlMs);
    }
  }

  private start(): void {
    this.started = true;
    this.scheduleRenew(this.o.renewMs);
    this.view.pollSoon();
    this.updateJudging();
    void this.followStatus();
  }

  private async followStatus(): Promise<void> {
    const iterator = this.o.nc.status();
    this.statusIterator = iterator;
    try {
      for await (const status of iterator) {
        if (this.closed) return;
        if (status.type === 'disconnect') {
          this.guard.disconnected();
          this.updateJudging();
        } else if (status.type === 'reconnect') {
          this.guard.reconnected(this.o.now());
          this.updateJudging();
          this.scheduleRenew(0);
          this.view.pollSoon();
        }
      }
    } catch (err) {
      this.emit({ kind: 'error', error: err });
    }
  }

  private scheduleRenew(delayMs: number): void {
    if (this.closed) return;
    if (this.renewing) {
      this.renewAgain = delayMs === 0 || this.renewAgain;
      return;
    }
    this.cancel(this.renewTimer);
    this.renewTimer = this.after(delayMs, () => void this.renewTick());
  }

  private async renewTick(): Promise<void> {
    const startedAt = this.o.now();
    this.renewing = (this.epochValue === undefined ? this.retake() : this.renew(this.epochValue)).catch((err: unknown) => {
      this.emit({ kind: 'error', error: err });
    });
    await this.renewing;
    this.renewing = undefined;
    const again = this.renewAgain;
    this.renewAgain = false;
    this.scheduleRenew(again ? 0 : Math.max(0, this.o.renewMs - (this.o.now() - startedAt)));
  }

  private async renew(epoch: number): Promise<void> {
    const sentAt = this.o.now();
    let revision: number;
    try {
      revision = await this.kv.update(this.replicaId, this.value(epoch), this.revision, this.o.requestTimeoutMs);
    } catch (err) {
      if (this.closed) return;
      // A timeout or a lost connection: the fence deadline decides. A wrong revision: see why.
      if (!isWrongLast(err)) throw err;
      await this.checkOwnLease(epoch);
      return;
    }
    if (this.epochValue !== epoch) return;
    this.revision = revision;
    if (this.closed) return;
    this.acknowledged(sentAt);
    this.emit({ kind: 'renewed', revision, tookMs: this.o.now() - sentAt });
  }

  /** A renewal lost its compare-and-set: either an earlier, timed-out one landed, or the lease is gone. */
  private async checkOwnLease(epoch: number): Promise<void> {
    const entry = await this.kv.get(this.replicaId);
    const peer = toPeer(entry);
    if (peer && peer.epoch === epoch) {
      this.revision = peer.revision; // the next renewal moves the deadline
      return;
    }
    this.loseLease(epoch);
  }

  private loseLease(epoch: number): void {
    const wasFenced = this.guard.isFenced();
    this.epochValue = undefined;
    this.view.markGone(this.replicaId, epoch);
    this.guard.lost(this.o.now());
    this.cancel(this.fenceTimer);
    if (!wasFenced) this.emit({ kind: 'fenced', reason: 'lease-lost' });
    this.emit({ kind: 'lease-lost', epoch });
    this.updateJudging();
    this.scheduleRenew(0);
  }

  private async retake(): Promise<void> {
    try {
      const sentAt = await this.take();
      this.conflicted = false;
      this.emit({ kind: 'lease-taken', epoch: this.revision });
      this.acknowledged(sentAt);
    } catch (err) {
      if (!(err instanceof MusterError)) throw err;
      if (!this.conflicted) this.emit({ kind: 'conflict', error: err });
      this.conflicted = true;
    }
  }

  /** A lease write sent at `sentAt` was acknowledged: move the fence deadline. */
  private acknowledged(sentAt: number): void {
    const wasFenced = this.guard.isFenced();
    this.guard.renewed(sentAt, this.o.now());
    if (wasFenced && !this.guard.isFenced() && this.epochValue !== undefined && this.started) {
      this.emit({ kind: 'unfenced', epoch: this.epochValue });
    }
    this.armFence();
    this.updateJudging();
  }

  private armFence(): void {
    this.cancel(this.fenceTimer);
    if (this.guard.isFenced() || this.closed) return;
    this.fenceTimer = this.after(Math.max(0, this.guard.fenceAt() - this.o.now()), () => {
      if (this.guard.checkFence(this.o.now())) this.fenceOverdue();
      else if (!this.guard.isFenced()) this.armFence();
    });
  }

  private fenceOverdue(): void {
    this.cancel(this.fenceTimer);
    this.emit({ kind: 'fenced', reason: 'renewal-overdue' });
    this.updateJudging();
  }

  private updateJudging(): void {
    const now = this.o.now();
    const may = this.guard.mayJudge(now);
    if (may !== this.judging) {
      this.judging = may;
      this.emit({ kind: 'judging', may });
      if (may) this.view.pollSoon(); // judge the peers that went while this replica could not
    }
    this.cancel(this.judgeTimer);
    const from = this.guard.judgeFrom();
    if (!may && from !== undefined && from > now && !this.closed) {
      this.judgeTimer = this.after(from - now, () => this.updateJudging());
    }
  }

  private after(delayMs: number, fn: () => void): NodeJS.Timeout {
    return this.timers.after(delayMs, fn);
  }

  private cancel(timer: NodeJS.Timeout | undefined): void {
    this.timers.cancel(timer);
  }
}
