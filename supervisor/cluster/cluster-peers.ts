// The cluster as one replica's API shows it: every node of every live replica (each peer asked
// through the node directory), a node's owner found from `muster-owners`, and the operator's
// commands for a node (drain, undrain) or a job's attempt (cancel) sent to the replica that owns
// it (node-commands.ts). `GET /v1/cluster` lists the replicas from their leases.
import type { Logger } from 'pino';
import { MusterError } from '../../protocol/errors.js';
import type { ClusterView, NodeDetail, NodeView } from '../admin/wire-types.js';
import type { JobRecord } from '../store/job-store.js';
import type { Bus } from '../bus/bus.js';
import type { ClusterServices } from './cluster-services.js';
import { RemoteNodeViews } from './remote-node-views.js';
import type { NodeCommand } from './node-commands.js';
import type { OwnNodes } from './node-directory.js';
import { toClusterError } from './nats-unavailable.js';

/** What a command for a node sent to its owner came to. */
export type Forwarded = 'done' | 'no_owner' | { refused: string };

export class ClusterPeers {
  constructor(
    private readonly cluster: ClusterServices,
    private readonly own: OwnNodes,
    private readonly logger: Logger,
  ) {}

  /**
   * This replica's nodes, then each live peer's; a peer that does not answer is left out (logged).
   * Rejects (unavailable) when this replica's own NATS does not answer: then it knows no peer's.
   */
  async nodes(): Promise<NodeView[]> {
    const { directory, connection } = this.cluster;
    const [lists] = await Promise.all([
      Promise.all(
        this.otherReplicas().map((id) =>
          directory.nodesOf(id).catch((err: unknown) => {
            this.logger.warn({ err, replica: id }, 'a replica did not list its nodes');
            return [];
          }),
        ),
      ),
      directory.reachable(connection.status.state),
    ]);
    return onePerNode([...this.own.list(), ...lists.flat()]);
  }

  /** A node of any replica, from its owner; rejects (unavailable) when NATS or the owner does not answer. */
  async node(nodeId: string): Promise<NodeDetail | undefined> {
    const mine = this.own.get(nodeId);
    if (mine !== undefined) return mine;
    const owner = await this.ownerOf(nodeId);
    return owner === undefined ? undefined : this.cluster.directory.nodeOf(owner, nodeId).catch(passingOr(undefined));
  }

  /** Drain or undrain a node of another replica. */
  async forNode(command: Extract<NodeCommand, { kind: 'drain' | 'undrain' }>): Promise<Forwarded> {
    const owner = await this.ownerOf(command.node_id);
    return owner === undefined ? 'no_owner' : this.send(owner, command);
  }

  /** A cancel stored for a job whose attempt a node of another replica holds: its owner tells the node. */
  async cancelElsewhere(record: JobRecord): Promise<void> {
    if ((record.state !== 'Assigned' && record.state !== 'Running') || record.node_id === undefined) return;
    const owner = await this.ownerOf(record.node_id);
    if (owner === undefined) return; // no live owner: the node is told when it resumes (the request is stored)
    const outcome = await this.send(owner, { kind: 'cancel', job_id: record.job_id, attempt: record.attempt });
    if (outcome !== 'done') this.logger.info({ job_id: record.job_id, owner, outcome }, 'cancel stored; the node is told when its owner has it');
  }

  view(): ClusterView {
    const status = this.cluster.connection.status.status();
    const replicas = this.cluster.lease.peers().map((p) => ({
      control_plane_id: p.id,
      nodes: p.id === this.cluster.replicaId ? this.own.list().length : p.nodeCount,
      started_at: p.startedAt,
      last_renewal: p.renewedAt,
      version: p.version,
      cluster_format: p.format ?? null,
    }));
    return { mode: 'cluster', replicas, nats: { state: status.state, server: status.server, reconnects: status.reconnects } };
  }

  private otherReplicas(): string[] {
    return this.cluster.lease.peers().map((p) => p.id).filter((id) => id !== this.cluster.replicaId);
  }

  /** The live replica that owns a node other than this one, from its ownership entry. */
  private async ownerOf(nodeId: string): Promise<string | undefined> {
    // A node id that cannot be a key has no entry; NATS not answering is no answer at all.
    const entry = await this.cluster.ownership.ownerOf(nodeId).catch(passingOr(undefined));
    if (entry === undefined || entry.owner === this.cluster.replicaId) return undefined;
    const live = await this.cluster.lease.isLive(entry.owner, entry.epoch).catch((err: unknown) => {
      throw toClusterError(err, `read the lease of replica ${entry.owner}`);
    });
    return live ? entry.owner : undefined;
  }

  private async send(owner: string, command: NodeCommand): Promise<Forwarded> {
    try {
      const reply = await this.cluster.commands.send(owner, command);
      if (reply.status === 'ok') return 'done';
      return reply.status === 'not_owner' ? 'no_owner' : { refused: reply.reason };
    } catch (err) {
      throw err instanceof MusterError ? err : new MusterError('internal', `replica ${owner} did not take the command`, { cause: err });
    }
  }
}

/**
 * A node is never shown twice: a replica it left may still remember it dead (it went quiet there,
 * then resumed elsewhere). Its live entry wins; of dead ones, the last heard.
 */
export function onePerNode(views: NodeView[]): NodeView[] {
  const byId = new Map<string, NodeView>();
  for (const view of views) {
    const kept = byId.get(view.node_id);
    if (kept === undefined || rank(view) > rank(kept)) byId.set(view.node_id, view);
  }
  return [...byId.values()];
}

/** A catch that rethrows a passing NATS failure (as unavailable) and answers `fallback` for any other. */
function passingOr<T>(fallback: T): (err: unknown) => T {
  return (err) => {
    const error = toClusterError(err, 'read the cluster');
    if (error.retryAfterMs !== undefined) throw error;
    return fallback;
  };
}

function rank(view: NodeView): number {
  return (view.state === 'dead' ? 0 : 1e15) + Date.parse(view.last_heartbeat);
}

/** What a replica's API adds to the plane's (plane-api-impl.ts `PlaneApiParts`). */
export interface ReplicaApiParts {
  peers: ClusterPeers;
  remoteViews: RemoteNodeViews;
  notReady(): string | undefined;
}

export function replicaApiParts(cluster: ClusterServices, own: OwnNodes, bus: Bus, logger: Logger): ReplicaApiParts {
  const peers = new ClusterPeers(cluster, own, logger);
  return {
    peers,
    remoteViews: new RemoteNodeViews(bus, cluster.replicaId, () => peers.nodes(), logger),
    // A replica cut off from NATS, or fenced, takes no node and no job: `/readyz` says why.
    notReady: () => {
      if (cluster.connection.status.state !== 'connected') return `NATS: ${cluster.connection.status.state}`;
      if (cluster.lease.isFenced()) return 'lease: not renewed in time (fenced)';
      return undefined;
    },
  };
}
