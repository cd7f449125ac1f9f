// The timing rules of a replica's lease, as pure arithmetic on a monotonic clock, so that they
// can be tested with plain numbers (replica-lease.ts feeds it real events and arms timers).
//
// Self-fencing: the server ages the lease out `ttlMs` after it stored the last renewal, and it
// stored that renewal no earlier than the replica sent it. So the lease is surely alive until
// `sentAt + ttlMs` of the last acknowledged renewal; the replica fences itself `marginMs` before
// that, which leaves room for clock-rate drift between it and the server, for timers that fire
// late (a busy event loop) and for stopping the writes it has in hand.
//
// Judging peers: a replica that was cut off from NATS, or fenced, sees a world that may be out
// of date (peers that have not renewed yet because they too just reconnected). It declares no
// node dead and requeues nothing until it has been connected and unfenced for a full `ttlMs`,
// long enough for every live peer to have renewed (wasmCloud PR 5502).

export interface LeaseTimings {
  ttlMs: number;
  marginMs: number;
}

export class LeaseGuard {
  private renewedSentAt: number | undefined;
  private connected = true;
  private fencedFlag = true;
  /** Since when the replica has been connected and unfenced; undefined while it is not. */
  private upSince: number | undefined;

  constructor(private readonly timings: LeaseTimings) {
    if (!(timings.marginMs > 0 && timings.marginMs < timings.ttlMs)) {
      throw new RangeError(`lease margin ${timings.marginMs} ms must be above 0 and below the TTL ${timings.ttlMs} ms`);
    }
  }

  /** A write of the lease (its create or a renewal) sent at `sentAt` was acknowledged. */
  renewed(sentAt: number, now: number): void {
    if (this.renewedSentAt === undefined || sentAt > this.renewedSentAt) this.renewedSentAt = sentAt;
    if (now < this.fenceAt()) this.setFenced(false, now);
  }

  /** The lease is known gone (aged out, or taken by another process): fenced at once. */
  lost(now: number): void {
    this.renewedSentAt = undefined;
    this.setFenced(true, now);
  }

  disconnected(): void {
    this.connected = false;
    this.upSince = undefined;
  }

  reconnected(now: number): void {
    this.connected = true;
    if (!this.fencedFlag && this.upSince === undefined) this.upSince = now;
  }

  /** When the replica must be fenced unless a renewal is acknowledged first. */
  fenceAt(): number {
    if (this.renewedSentAt === undefined) return -Infinity;
    return this.renewedSentAt + this.timings.ttlMs - this.timings.marginMs;
  }

  /** Applies the deadline; true when this call fenced the replica. */
  checkFence(now: number): boolean {
    if (this.fencedFlag || now < this.fenceAt()) return false;
    this.setFenced(true, now);
    return true;
  }

  /** False from a disconnect of the lease's connection until it reconnects. */
  isConnected(): boolean {
    return this.connected;
  }

  isFenced(): boolean {
    return this.fencedFlag;
  }

  /** From when the replica may judge peers (declare nodes dead, requeue); undefined: not foreseeable. */
  judgeFrom(): number | undefined {
    return this.upSince === undefined ? undefined : this.upSince + this.timings.ttlMs;
  }

  mayJudge(now: number): boolean {
    const from = this.judgeFrom();
    return from !== undefined && now >= from && !this.fencedFlag && now < this.fenceAt();
  }

  private setFenced(fenced: boolean, now: number): void {
    this.fencedFlag = fenced;
    if (fenced) this.upSince = undefined;
    else if (this.connected && this.upSince === undefined) this.upSince = now;
  }
}
