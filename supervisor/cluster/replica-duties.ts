// What a replica does for the cluster, beside serving its own nodes: it answers the other
// replicas' commands for the nodes it owns (release one to the replica it reached, cancel an
// attempt, drain, undrain), lets go of a node another replica took (closing its session with
// `session_replaced`), closes every node with `shutting_down` when it cannot renew its lease (so
// that they go to a replica that can serve them), and takes over the jobs of nodes whose replica
// died and that came back to none (orphans), once it may judge (lease-guard.ts).
import type { Logger } from 'pino';
import type { ClusterMetrics } from '../../observability/plane-metrics.js';
import { MusterError } from '../../protocol/errors.js';
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import type { NodeRegistry } from '../nodes/node-registry.js';
import type { NodeSession } from '../nodes/node-session.js';
import type { JobStore } from '../store/job-store.js';
import { undrainSession } from '../nodes/node-undrain.js';
import type { ClusterServices } from './cluster-services.js';
import { NodeCommandServer, type NodeCommandHandler, type NodeCommandReply } from './node-commands.js';
import type { OwnNodes } from './node-directory.js';
import { Rebalancer } from './rebalancer.js';
import type { RemoteNodeViews } from './remote-node-views.js';

export interface ReplicaDutiesOptions {
  cluster: ClusterServices;
  registry: NodeRegistry;
  coordinator: JobCoordinator;
  store: JobStore;
  /** This replica's own nodes as the API shows them. */
  own: OwnNodes;
  logger: Logger;
  /** How often the replica looks whether it holds more than its share of nodes (rebalancer.ts); 0: never. */
  rebalanceIntervalMs: number;
  /** Told to nodes it sheds. */
  shutdownGraceMs: number;
  /**
   * Reads the cluster's queue again (the scheduler's `load`): after NATS was away, the events of
   * jobs queued meanwhile were not heard, and a placement lost to the outage dropped its job.
   */
  reloadQueue(): Promise<void>;
  /** The replica's lease and NATS metrics (`/metrics`). */
  metrics: ClusterMetrics;
  /** Read again once the replica knows its peers, and after NATS comes back. */
  remoteViews: Pick<RemoteNodeViews, 'refresh'>;
}

export interface ReplicaDuties {
  close(): Promise<void>;
}

export async function startReplicaDuties(o: ReplicaDutiesOptions): Promise<ReplicaDuties> {
  const { cluster, registry, coordinator, logger } = o;
  const notOwner = (what: string): NodeCommandReply => ({ status: 'not_owner', reason: `${cluster.replicaId} does not hold ${what}` });

  /** Ends a node's session here: the node goes on with another replica. */
  const letGo = (nodeId: string, error: MusterError): void => {
    coordinator.forgetNode(nodeId);
    const session = registry.get(nodeId);
    if (session === undefined) return;
    if (error.code === 'session_replaced') session.actor.send({ type: 'replaced' });
    else stepAside(session, error.message);
  };

  const handler: NodeCommandHandler = {
    assign: () => ({ status: 'error', reason: 'jobs are assigned by the replica that owns the node' }),
    cancel: (command) => (coordinator.cancelPlaced(command.job_id, command.attempt) ? { status: 'ok' } : notOwner(`job ${command.job_id} attempt ${command.attempt}`)),
    drain: (command) => {
      const session = registry.get(command.node_id);
      if (session === undefined) return notOwner(`node ${command.node_id}`);
      session.actor.send({ type: 'drain' });
      return { status: 'ok' };
    },
    undrain: (command) => {
      const session = registry.get(command.node_id);
      if (session === undefined) return notOwner(`node ${command.node_id}`);
      const outcome = undrainSession(session);
      return outcome === 'requested' ? { status: 'ok' } : { status: 'error', reason: outcome };
    },
    release: async (command) => {
      // The node reached another replica (PROTOCOL.md 4.7 across replicas): close it here first,
      // then give the entry up, so that the two never serve it at once.
      letGo(command.node_id, new MusterError('session_replaced', `node ${command.node_id} registered on replica ${command.to_replica}`));
      await cluster.ownership.answerRelease(command.node_id);
      logger.info({ node_id: command.node_id, to: command.to_replica }, 'node released to another replica');
      return { status: 'ok' };
    },
  };
  const server = await NodeCommandServer.start({ nc: cluster.connection.nc, replicaId: cluster.replicaId, handler, logger, status: cluster.connection.status });
  await cluster.directory.serve(o.own);

  const stopOwnership = cluster.ownership.subscribe((event) => {
    if (event.kind === 'error') {
      logger.warn({ err: event.error }, 'node ownership watch failed; it is made again');
      return;
    }
    logger.info({ node_id: event.node_id, reason: event.reason, by: event.by }, 'node no longer owned by this replica');
    const error =
      event.reason === 'taken'
        ? new MusterError('session_replaced', `node ${event.node_id} was taken over by replica ${event.by ?? 'another replica'}`)
        : new MusterError('shutting_down', `replica ${cluster.replicaId} lost its lease`);
    letGo(event.node_id, error);
  });

  let sweeping: Promise<void> | undefined;
  let sweepAgain = false;
  /** Every node with active jobs that no live replica owns is adopted here, for its jobs. */
  const sweep = (): void => {
    if (sweeping !== undefined) {
      sweepAgain = true;
      return;
    }
    sweeping = adoptOrphans(o)
      .catch((err: unknown) => logger.warn({ err }, 'adopting orphaned jobs failed; tried again at the next change'))
      .finally(() => {
        sweeping = undefined;
        if (sweepAgain) {
          sweepAgain = false;
          sweep();
        }
      });
  };

  o.metrics.leasesHeld = cluster.lease.epoch === undefined ? 0 : 1;
  const stopLease = cluster.lease.subscribe((event) => {
    o.metrics.leasesHeld = cluster.lease.epoch === undefined || cluster.lease.isFenced() ? 0 : 1;
    switch (event.kind) {
      case 'renewed':
        o.metrics.leaseRenewed(event.tookMs);
        return;
      case 'fenced':
        logger.warn({ reason: event.reason }, 'replica fenced: its lease may have aged out; closing its nodes so they go to a replica that can serve them');
        for (const session of [...registry.sessionsList()]) stepAside(session, `replica ${cluster.replicaId} cannot renew its lease`);
        return;
      case 'unfenced':
        logger.info({ epoch: event.epoch }, 'replica lease renewed again: serving nodes');
        reload();
        return;
      case 'peer-gone':
        logger.info({ replica: event.id, epoch: event.epoch }, 'a replica lease is gone: adopting the jobs of its nodes that went nowhere');
        sweep();
        return;
      case 'judging':
        if (!event.may) return;
        sweep();
        void o.remoteViews.refresh();
        return;
      case 'conflict':
        logger.error({ err: event.error }, 'another process holds this replica id');
        return;
      case 'peer-format':
        // Reported, not acted on: this replica passed the start-up guard (format-guard.ts), so it
        // matches the cluster's stored format and its live peers; the newcomer is the one out of
        // place. Stepping aside would hand the fleet to the replica that misreads it, and this
        // one can neither stop another process nor undo what it writes: the operator can, told
        // here and by GET /v1/cluster (each replica's version and format).
        logger.error(
          { replica: event.peer.id, version: event.peer.version, cluster_format: event.peer.format ?? null, ours: cluster.lease.format },
          `replica ${event.peer.id} (muster ${event.peer.version || 'of unknown version'}) joined with cluster format ${event.peer.format ?? 'none'}, ` +
            `this replica has format ${cluster.lease.format}: they misread each other's records; stop it, or upgrade all replicas at once`,
        );
        return;
      case 'error':
        logger.warn({ err: event.error }, 'lease operation failed');
        return;
      default:
        return;
    }
  });
  if (cluster.lease.mayJudge()) sweep();
  const reload = (): void => {
    void o.remoteViews.refresh();
    o.reloadQueue().catch((err: unknown) => logger.warn({ err }, 'reading the queue again failed; tried again at the next reconnect'));
  };
  const stopStatus = cluster.connection.status.onChange((status, previous) => {
    o.metrics.natsReconnects = status.reconnects;
    if (status.state === 'connected' && previous !== 'connected') reload();
  });
  const rebalancer = new Rebalancer({ lease: cluster.lease, registry, coordinator, intervalMs: o.rebalanceIntervalMs, shutdownGraceMs: o.shutdownGraceMs, logger });

  return {
    close: async () => {
      rebalancer.stop();
      stopStatus();
      stopLease();
      stopOwnership();
      await server.close();
      await sweeping;
    },
  };
}

/**
 * Closes a node's session with `shutting_down` (PROTOCOL.md 4.12) and ends its actor as shut down:
 * the node lives on with another replica, so this replica neither buries it nor takes its jobs
 * back when its heartbeats stop arriving here (that would declare a healthy node dead).
 */
function stepAside(session: NodeSession, reason: string): void {
  session.sendError(new MusterError('shutting_down', reason));
  session.actor.send({ type: 'shutdown' });
  void session.connection.close();
}

async function adoptOrphans(o: ReplicaDutiesOptions): Promise<void> {
  const nodes = new Set<string>();
  for (const job of await o.store.active()) {
    if (job.node_id !== undefined && o.registry.get(job.node_id) === undefined && o.cluster.claims.tokenOf(job.node_id) === undefined) nodes.add(job.node_id);
  }
  for (const nodeId of nodes) {
    const taken = await o.cluster.claims.adoptOrphan(nodeId, (token) => o.coordinator.takeOver(nodeId, token));
    if (taken > 0) {
      o.logger.info({ node_id: nodeId, jobs: taken }, "adopted an orphaned node's jobs: they are requeued unless it resumes in time");
    }
  }
}
