// Balance (issue 10 item 6): when a replica joins, nodes spread to it without a stampede. Every
// `rebalanceIntervalMs` each replica compares the nodes it serves with an even share of the
// cluster's (from the node counts in the live leases); holding more than 10% over it (or over it
// while another replica is 10% under), it sheds a few idle nodes, a quarter of its excess at most, with `Shutdown{reason: "rebalance"}`. They
// reconnect with `resume` to their next URL (or through the address in front of the replicas),
// and the next round looks again. Nodes running jobs are never shed: no job is interrupted.
import type { Logger } from 'pino';
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import type { NodeRegistry } from '../nodes/node-registry.js';
import type { ReplicaLease } from './replica-lease.js';

/** Over this share of an even split, a replica sheds. */
const TOLERANCE = 0.1;
/** The most nodes one round sheds. */
const MAX_SHED_PER_ROUND = 50;

/**
 * How many nodes a replica holding `own` should shed now, the others holding `others`: some when
 * it is more than 10% over an even share, or over it while another is more than 10% under; none
 * when no replica holds at least two fewer (a node moved would only make another replica the one
 * over: with 1 node and 3 replicas, it would never settle).
 */
export function shedCount(own: number, others: readonly number[]): number {
  const replicas = others.length + 1;
  const share = (own + others.reduce((a, b) => a + b, 0)) / replicas;
  const fewest = Math.min(...others);
  const over = own > share * (1 + TOLERANCE) || (fewest < share * (1 - TOLERANCE) && own > Math.ceil(share));
  if (replicas < 2 || !over || own - fewest < 2) return 0;
  const excess = own - Math.ceil(share);
  return Math.min(MAX_SHED_PER_ROUND, Math.max(1, Math.ceil(excess / 4)));
}

export interface RebalancerOptions {
  lease: Pick<ReplicaLease, 'peers' | 'replicaId' | 'isFenced'>;
  registry: NodeRegistry;
  coordinator: Pick<JobCoordinator, 'isOccupied'>;
  intervalMs: number;
  /** Told to shed nodes in `Shutdown`. */
  shutdownGraceMs: number;
  logger: Logger;
}

export class Rebalancer {
  private readonly timer: NodeJS.Timeout | undefined;
  private shed = 0;

  constructor(private readonly o: RebalancerOptions) {
    if (o.intervalMs > 0) {
      this.timer = setInterval(() => this.round(), o.intervalMs);
      this.timer.unref();
    }
  }

  /**
   * One round: sheds what `shedCount` says, idle nodes only. It counts as the lease does (the
   * registry's size, which peers compare theirs with), and walks the sessions only to shed: a
   * balanced round costs the same whatever the fleet.
   */
  round(): void {
    if (this.o.lease.isFenced()) return;
    const others = this.o.lease.peers().filter((p) => p.id !== this.o.lease.replicaId).map((p) => p.nodeCount);
    const serving = this.o.registry.size;
    let count = shedCount(serving, others);
    if (count === 0) return;
    for (const session of this.o.registry.sessionsList()) {
      if (count === 0) break;
      const nodeId = session.nodeId;
      if (!session.connected || nodeId === undefined || session.state !== 'ready' || this.o.coordinator.isOccupied(nodeId)) continue;
      session.send('Shutdown', { reason: 'rebalance', grace_period_ms: this.o.shutdownGraceMs });
      session.actor.send({ type: 'shutdown' });
      void session.connection.close();
      this.shed += 1;
      count -= 1;
    }
    this.o.logger.info({ shed_total: this.shed, serving }, 'shed nodes to rebalance the cluster');
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
