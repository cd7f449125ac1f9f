// The NodeClaims seam (nodes/node-claims.ts) for a cluster replica: a node is claimed in
// `muster-owners` (node-ownership.ts) before its RegisterAck, and a job write for it carries the
// claim's token only while the replica's lease stands (a fenced replica writes nothing).
// It also serialises, per node, a claim by an arriving node with the adoption of the same node as
// an orphan (its replica died and it went nowhere), so that its jobs are placed once, before the
// node is acknowledged.
import type { NodeClaim, NodeClaims } from '../nodes/node-claims.js';
import type { OwnerToken } from '../store/job-store.js';
import type { NodeOwnership } from './node-ownership.js';
import type { ReplicaLease } from './replica-lease.js';

/**
 * Claims on NATS at once, at most: a resume storm (a dead replica's thousands of nodes arriving
 * together) must not queue so many requests on the connection that the lease's renewal, or the
 * claims themselves, time out; the rest wait their turn here.
 */
export const MAX_CLAIMS_IN_FLIGHT = 64;

export class ReplicaClaims implements NodeClaims {
  /** Per node, the claim or orphan adoption under way: the next waits for it. */
  private readonly busy = new Map<string, Promise<unknown>>();
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly ownership: NodeOwnership,
    private readonly lease: Pick<ReplicaLease, 'isFenced'>,
  ) {}

  claim(nodeId: string): Promise<NodeClaim> {
    // Always a takeover: the store, not this replica's memory, says which attempts the node holds
    // (after a fence and back, the replica's own placements were dropped; reading costs two index queries).
    return this.serial(nodeId, () => this.bounded(async () => ({ token: (await this.ownership.claim(nodeId)).token, takeover: true })));
  }

  tokenOf(nodeId: string): OwnerToken | undefined {
    return this.lease.isFenced() ? undefined : this.ownership.tokenOf(nodeId);
  }

  /**
   * Takes a node whose replica is gone, for its jobs (`takeOver` places them here, waiting for the
   * node): nothing when the node is live elsewhere or being claimed here. Resolves with how many
   * jobs were taken.
   */
  adoptOrphan(nodeId: string, takeOver: (token: OwnerToken) => Promise<number>): Promise<number> {
    if (this.busy.has(nodeId)) return Promise.resolve(0);
    return this.serial(nodeId, async () => {
      const claim = await this.bounded(() => this.ownership.claimOrphan(nodeId));
      return claim === undefined ? 0 : takeOver(claim.token);
    });
  }

  private async bounded<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inFlight >= MAX_CLAIMS_IN_FLIGHT) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.inFlight += 1;
    try {
      return await fn();
    } finally {
      this.inFlight -= 1;
      this.waiting.shift()?.();
    }
  }

  private serial<T>(nodeId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.busy.get(nodeId) ?? Promise.resolve();
    const next = before.catch(() => undefined).then(fn);
    this.busy.set(nodeId, next);
    const forget = (): void => {
      if (this.busy.get(nodeId) === next) this.busy.delete(nodeId);
    };
    next.then(forget, forget);
    return next;
  }
}
