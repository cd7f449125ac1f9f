// A replica's parts on NATS, opened in the order each needs (and opened again, while NATS or
// JetStream does not answer yet at start: startup-wait.ts): the connection, the server check for
// replicated buckets (server-version.ts), the replica's lease, the cluster format guard
// (format-guard.ts: no start beside replicas or on data of another release), the job and token stores, the bus
// (replica-bus.ts: job events from the job store's watch, node and log events over NATS),
// ownership of nodes, the command channel, the node directory and the artifacts (object store).
// `muster serve --nats` builds the plane on these instead of SQLite and the in-process bus
// (control-plane.ts); nothing here decides what the plane does with them (replica-duties.ts does).
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import { ConfigError, sourceOf, type Config } from '../config.js';
import type { Stores } from '../store/open-stores.js';
import { SecretBox } from '../store/secret-box.js';
import { loadSecret } from '../tokens/secret.js';
import { JetStreamJobStore } from './jetstream-job-store.js';
import { KvTokenStore } from './kv-token-store.js';
import { NatsBus } from './nats-bus.js';
import { ReplicaBus } from './replica-bus.js';
import { natsSettingsOf, openNatsConnection, type OpenNatsConnection } from './nats-connection.js';
import { NodeCommandClient } from './node-commands.js';
import { NodeDirectory } from './node-directory.js';
import { NodeOwnership, OWNERS_BUCKET } from './node-ownership.js';
import { LEASE_BUCKET, ReplicaLease } from './replica-lease.js';
import { ReplicaClaims } from './replica-claims.js';
import { ARTIFACTS_BUCKET, ObjectArtifactStore } from './object-artifact-store.js';
import { checkConnectionReplicas } from './server-version.js';
import { CLUSTER_BUCKET, checkPeerFormats, checkStoredFormat } from './format-guard.js';
import { whenNatsAnswers } from './startup-wait.js';

const JOBS_BUCKET = 'muster-jobs';

export interface ClusterServices {
  readonly replicaId: string;
  readonly connection: OpenNatsConnection;
  readonly lease: ReplicaLease;
  readonly ownership: NodeOwnership;
  readonly claims: ReplicaClaims;
  readonly stores: Stores;
  readonly bus: ReplicaBus;
  readonly commands: NodeCommandClient;
  readonly directory: NodeDirectory;
  /** The fleet's artifacts, in JetStream's object store: any replica resumes an upload or serves an artifact. */
  readonly artifacts: ObjectArtifactStore;
  /** Closes what `stores` and `bus` do not: ownership, directory, lease (given up), connection. */
  close(): Promise<void>;
}

/** Refuses a cluster configuration that would split the fleet's tokens or secrets. */
export function checkClusterConfig(config: Config): void {
  if (config.jwtSecret === '') {
    throw new ConfigError('cluster mode needs one token secret shared by every replica (MUSTER_JWT_SECRET or --jwt-secret)', [
      { setting: 'jwtSecret', source: sourceOf(config, 'jwtSecret'), problem: 'must be set, the same on every replica, in cluster mode' },
    ]);
  }
}

/**
 * The key that seals job secrets in JetStream: derived from the token secret every replica
 * shares, so each replica opens what another sealed and there is one secret to distribute.
 */
export function jobSecretsKey(config: Config): Uint8Array {
  return createHmac('sha256', loadSecret(config)).update('muster job secrets v1').digest();
}

export async function openCluster(config: Config, replicaId: string, version: string, log: Logger, nodeCount: () => number): Promise<ClusterServices> {
  checkClusterConfig(config);
  // Each try that fails has closed what it opened (undo below), so the next starts clean.
  const wait = { waitMs: config.natsStartupWaitMs, nats: config.nats, log };
  return whenNatsAnswers(() => openParts(config, replicaId, version, log, nodeCount), wait);
}

async function openParts(config: Config, replicaId: string, version: string, log: Logger, nodeCount: () => number): Promise<ClusterServices> {
  const connection = await openNatsConnection(natsSettingsOf(config, replicaId));
  const opened: Array<() => Promise<unknown>> = [() => connection.close()];
  const undo = async (): Promise<void> => {
    for (const close of opened.reverse()) await close().catch(() => undefined);
  };
  try {
    const { nc, status } = connection;
    const replicas = config.natsReplicas;
    checkConnectionReplicas(nc, replicas, [LEASE_BUCKET, OWNERS_BUCKET, JOBS_BUCKET, ARTIFACTS_BUCKET, CLUSTER_BUCKET]);
    // The lease renews on a connection of its own: a storm of claims and job writes queued on the
    // main one must not hold a renewal back until the replica fences itself.
    const leaseConnection = await openNatsConnection(natsSettingsOf(config, `${replicaId}-lease`));
    opened.push(() => leaseConnection.close());
    const lease = await ReplicaLease.acquire({ nc: leaseConnection.nc, replicaId, version, replicas, ttlMs: config.leaseTtlMs, renewMs: config.leaseRenewMs, nodeCount });
    opened.push(() => lease.close({ release: true }));
    // Before any job or node: a refusal here gives the lease up (undo) and has written nothing else.
    const self = { replicaId, version, format: lease.format };
    checkPeerFormats(await lease.readLeases(), self, lease.ttlMs);
    if ((await checkStoredFormat(nc, self, { replicas })) === 'stamped') log.info({ cluster_format: self.format }, 'cluster format stored on NATS (first replica of this format)');
    const jobs = await JetStreamJobStore.open({ nc, box: SecretBox.fromKey(jobSecretsKey(config)), replicas, timeoutMs: config.natsRequestTimeoutMs });
    opened.push(() => jobs.close());
    const tokens = await KvTokenStore.open({ nc, replicas, timeoutMs: config.natsRequestTimeoutMs });
    opened.push(() => tokens.close());
    const onHandlerError = (err: unknown): void => log.error({ err }, 'bus subscriber failed');
    // Job events come from the job store's watch, the rest over NATS (replica-bus.ts).
    const bus = new ReplicaBus(await NatsBus.start({ nc, logger: log, status, onHandlerError, hearOwn: false }), jobs, onHandlerError);
    opened.push(() => bus.close());
    const commands = new NodeCommandClient({ nc, replicaId, timeoutMs: config.natsRequestTimeoutMs, status });
    const ownership = await NodeOwnership.open({
      nc,
      lease,
      replicas,
      requestRelease: async (owner, nodeId) => {
        const reply = await commands.send(owner, { kind: 'release', node_id: nodeId, to_replica: replicaId });
        if (reply.status === 'error') throw new Error(reply.reason); // no answer: its lease decides
        return 'released'; // ok, or not_owner: the claim reads the entry again
      },
    });
    opened.push(() => ownership.close());
    const directory = new NodeDirectory(nc, replicaId, config.natsRequestTimeoutMs, log, status);
    const artifacts = await ObjectArtifactStore.open({ nc, replicas, maxArtifactBytes: config.maxArtifactBytes, timeoutMs: config.natsRequestTimeoutMs });
    const stores: Stores = {
      jobs,
      tokens,
      close: async () => {
        await tokens.close();
        await jobs.close();
      },
    };
    return {
      replicaId,
      connection,
      lease,
      ownership,
      claims: new ReplicaClaims(ownership, lease),
      stores,
      bus,
      commands,
      directory,
      artifacts,
      close: async () => {
        await directory.close().catch(() => undefined);
        await ownership.close();
        await lease.close({ release: true });
        await leaseConnection.close();
        await connection.close();
      },
    };
  } catch (err) {
    await undo();
    throw err;
  }
}
