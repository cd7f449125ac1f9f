// What the plane stands on, chosen from the configuration: the embedded plane keeps jobs and
// tokens in SQLite and artifacts in its data directory, hears its own events on an in-process bus
// and owns every node that reaches it; with NATS configured it is one replica of a cluster, on
// JetStream, KV, the object store and NATS (cluster/cluster-services.ts), claiming each node
// before serving it. Everything above it is the same in both.
import type { Logger } from 'pino';
import type { ArtifactStore } from './artifacts/artifact-store.js';
import { FileArtifactStore } from './artifacts/file-artifact-store.js';
import type { Bus } from './bus/bus.js';
import { LocalBus } from './bus/local-bus.js';
import type { Config } from './config.js';
import { openCluster, type ClusterServices } from './cluster/cluster-services.js';
import { soleOwner, type NodeClaims } from './nodes/node-claims.js';
import { openStores, type Stores } from './store/open-stores.js';
import { packageVersion } from './package-version.js';

export interface Backbone {
  stores: Stores;
  bus: Bus;
  claims: NodeClaims;
  /** Where uploaded artifacts are kept (the `artifacts` wire feature, `/v1/jobs/{id}/artifacts`). */
  artifacts: ArtifactStore;
  /** The replica's NATS parts; undefined for the embedded plane. */
  cluster?: ClusterServices;
}

export async function openBackbone(config: Config, id: string, log: Logger, nodeCount: () => number): Promise<Backbone> {
  if (config.nats === '') {
    return {
      stores: openStores(config, log),
      bus: new LocalBus((err) => log.error({ err }, 'bus subscriber failed')),
      claims: soleOwner,
      artifacts: new FileArtifactStore({ dataDir: config.dataDir, maxArtifactBytes: config.maxArtifactBytes }),
    };
  }
  const cluster = await openCluster(config, id, packageVersion(), log, nodeCount);
  log.info({ nats: config.nats, epoch: cluster.lease.epoch }, 'cluster replica: lease taken');
  return { stores: cluster.stores, bus: cluster.bus, claims: cluster.claims, artifacts: cluster.artifacts, cluster };
}
