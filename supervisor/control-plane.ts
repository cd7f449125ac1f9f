// The control plane, wired: listeners → node intake → node sessions (one actor each) →
// registrar and registry, job coordinator, scheduler, job store, bus, and the admin HTTP API.
// `startControlPlane` is what `muster serve` and the integration tests run. It only builds
// the parts in an order where each needs only those before it (two relays carry the calls
// that go the other way), starts listening, and hands back how to stop them.
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ClusterMetrics, PlaneMetrics } from '../observability/plane-metrics.js';
import type { TokenAuthority } from './tokens/tokens.js';
import { startAdminApi } from './admin/api-server.js';
import type { PlaneApi } from './admin/plane-api.js';
import { PlaneApiImpl } from './admin/plane-api-impl.js';
import type { Bus } from './bus/bus.js';
import { replicaApiParts } from './cluster/cluster-peers.js';
import type { OwnNodes } from './cluster/node-directory.js';
import { startReplicaDuties } from './cluster/replica-duties.js';
import { LISTENER_OFF, type Config } from './config.js';
import { openBackbone } from './plane-backbone.js';
import { DataDirLock } from './store/data-dir-lock.js';
import { checkConfig } from './config-ranges.js';
import { JobCoordinator } from './jobs/job-coordinator.js';
import { followNode } from './jobs/fleet-feed.js';
import { NodeBreaker } from './jobs/node-breaker.js';
import type { SchedulingPolicy } from './jobs/fleet-index.js';
import { Scheduler } from './jobs/scheduler.js';
import { HeartbeatGovernor } from './nodes/heartbeat-governor.js';
import { MessageTap } from './nodes/message-tap.js';
import { NodeIntake } from './nodes/node-intake.js';
import { startNodeInspector } from './nodes/node-inspector.js';
import { hostPort, listenForNodes } from './nodes/node-listeners.js';
import { NodeRegistry } from './nodes/node-registry.js';
import { NodeRevocation } from './nodes/node-revocation.js';
import type { NodeSession } from './nodes/node-session.js';
import { planeSessionHost } from './nodes/plane-session-host.js';
import { Registrar } from './nodes/registrar.js';
import { PlaneShutdown } from './plane-shutdown.js';
import { Relay } from './relay.js';
import { ArtifactIntake } from './artifacts/artifact-intake.js';
import { ArtifactSweeper } from './artifacts/artifact-sweeper.js';
import { ARTIFACT_WINDOW_BYTES } from './nodes/protocol-versions.js';
import { schedulerSource } from './scheduler-source.js';
import { createPlaneSecurity } from './security/plane-security.js';
import { SessionTokens } from './tokens/session-tokens.js';
import { EMBEDDED_OWNER } from './store/open-stores.js';
import { tokenAdmin, TokenRegistry, type TokenAdmin } from './tokens/token-registry.js';
import { tokenAuthorityFromConfig } from './tokens/token-setup.js';

export interface ControlPlane {
  readonly id: string;
  readonly api: PlaneApi;
  /** Node listener URLs actually bound (`tcp://127.0.0.1:7420`, `unix:///...`). */
  readonly nodeUrls: string[];
  readonly httpUrl: string;
  readonly tokens: TokenAuthority;
  /** Job and node changes as they happen (the in-process bus in the embedded plane). */
  readonly bus: Bus;
  /** Embedders' handlers of node messages (the library's `onMessage`). */
  readonly messages: MessageTap;
  /** Mints tokens and records them, as `muster token create` does. */
  readonly tokenAdmin: TokenAdmin;
  /** The session of a connected node, to send it a message; undefined when it is not connected. */
  session(nodeId: string): NodeSession | undefined;
  /** Sends `Shutdown` to every node, stops listening, closes the store. */
  shutdown(reason?: string): Promise<void>;
}

export async function startControlPlane(config: Config, logger: Logger): Promise<ControlPlane> {
  // Every setting in its range, or nothing starts (the error names each bad setting's source).
  checkConfig(config);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // One plane per data directory (store/data-dir-lock.ts), given up once the plane has stopped.
  const lock = DataDirLock.acquire(config.dataDir);
  try {
    return await startOn(config, logger, lock);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startOn(config: Config, logger: Logger, dataDirLock: DataDirLock): Promise<ControlPlane> {
  const id = config.controlPlaneId || `${hostname()}-${randomUUID().slice(0, 8)}`;
  const log = logger.child({ control_plane_id: id });
  // Every part counts into the plane's own metrics registry (`/metrics`).
  const metrics = new PlaneMetrics();
  // Allow-lists, bans, rate limits and the audit log; a bad CIDR setting fails here.
  const security = createPlaneSecurity(config, log, metrics);
  const registry = new NodeRegistry(id, config.deadNodeRetentionMs);
  // SQLite, the data directory and the in-process bus, or JetStream, the object store and NATS for a cluster replica (plane-backbone.ts).
  const { stores, bus, claims, cluster, artifacts: artifactStore } = await openBackbone(config, id, log, () => registry.size);
  const store = stores.jobs;

  // Tokens: revocations are held in memory and checked on every token; a revocation closes the
  // sessions standing on it, which are tracked once they have registered (below).
  const revoked = new Relay<string>();
  const tokenRegistry = await TokenRegistry.open({
    store: stores.tokens,
    logger: log,
    pollMs: config.revocationPollMs,
    reconcileMs: config.revocationReconcileMs,
    keepExpiredMs: config.tokenKeepExpiredMs,
    pruneIntervalMs: config.tokenPruneIntervalMs,
    onRevoked: (revocation) => revoked.send(revocation.jti),
  });
  const tokens = tokenAuthorityFromConfig(config, { isRevoked: (jti) => tokenRegistry.isRevoked(jti) });
  const sessionTokens = new SessionTokens<NodeSession>({
    tokens,
    sessionTtlSeconds: config.sessionTtlSeconds,
    // One session token per registration: recorded in batches, nothing waits on them.
    record: (info) => tokenRegistry.recordSoon(info),
    logger: log,
  });
  const revocation = new NodeRevocation(sessionTokens, (jti) => tokenRegistry.isRevoked(jti));
  revoked.connect((jti) => revocation.disconnect(jti));

  // Jobs: the coordinator wakes the scheduler when a node has room; the scheduler places through it.
  const wake = new Relay();
  const wakeScheduler = (): void => wake.send();
  const breaker = new NodeBreaker(config, (nodeId, bench) =>
    log.warn({ node_id: nodeId, until: new Date(bench.until).toISOString(), reason: bench.reason }, 'node benched: its attempts keep failing'),
  );
  const coordinator = new JobCoordinator({
    store,
    owner: EMBEDDED_OWNER,
    tokenOf: (nodeId) => claims.tokenOf(nodeId),
    // A replica back on NATS after losing it judges no node until its lease has stood a full TTL.
    ...(cluster === undefined ? {} : { mayWithdraw: () => cluster.lease.mayJudge() }),
    bus,
    logger: log,
    acceptTimeoutMs: config.acceptTimeoutMs,
    timeoutGraceMs: config.jobTimeoutGraceMs,
    orphanGraceMs: config.heartbeatIntervalMs * (config.missedHeartbeats + 1),
    sessionOf: (nodeId) => registry.get(nodeId),
    wakeScheduler,
    audit: security.audit,
    breaker,
    metrics,
  });
  // Told of each node by its session (jobs/fleet-feed.ts) and of each queued job by the bus.
  const scheduler = new Scheduler({
    store,
    bus,
    logger: log,
    policy: config.schedulingPolicy as SchedulingPolicy,
    retryBackoffMs: config.retryBackoffMs,
    retryBackoffMaxMs: config.retryBackoffMaxMs,
    ...schedulerSource(registry, coordinator, store, bus, EMBEDDED_OWNER),
  });
  wake.connect(() => scheduler.wake());
  // A replica's restart starts a new epoch: the jobs of its old one are orphans for any replica (replica-duties.ts).
  if (cluster === undefined) await coordinator.recover();
  await scheduler.load();

  // Nodes: each connection through the intake to its session, registered by the registrar,
  // which tells the heartbeat governor of each node that comes and goes.
  const heartbeats = new HeartbeatGovernor({
    policy: config,
    nodes: () => registry.size,
    sessions: () => registry.sessionsList(),
    logger: log,
  });
  // Artifacts (the `artifacts` wire feature) into the backbone's store: any replica of a cluster takes up an upload or serves one.
  const artifactIntake = new ArtifactIntake({
    store: artifactStore,
    holds: (nodeId, jobId, attempt) => coordinator.holds(nodeId, jobId, attempt),
    windowBytes: ARTIFACT_WINDOW_BYTES,
    logger: log,
    bus,
  });
  // Every plane sweeps its store's abandoned uploads, a cluster's replicas each (the object store's removal is a compare-and-set).
  const artifactSweeper = new ArtifactSweeper({ store: artifactStore, jobs: store, abandonAfterMs: config.artifactAbandonAfterMs, logger: log });
  const registrar = new Registrar({
    controlPlaneId: id,
    config,
    tokens,
    gate: security.gate,
    revocation,
    registry,
    sessionTokens,
    coordinator,
    claims,
    heartbeats,
    revoke: (jti, reason) => tokenRegistry.revoke(jti, reason),
    wakeScheduler,
    metrics,
    artifacts: true,
  });
  const messages = new MessageTap(log);
  // `--inspect`: the actors' inspection events go to a Stately inspector; without it, none are made.
  const inspector = config.inspect === '' ? undefined : startNodeInspector(config.inspect, log);
  const host = planeSessionHost({
    controlPlaneId: id,
    logger: log,
    config,
    registrar,
    coordinator,
    bus,
    security,
    meter: metrics.wire,
    wakeScheduler,
    tap: messages,
    artifacts: artifactIntake,
    ...(inspector === undefined ? {} : { inspector }),
  });
  const intake = new NodeIntake(host, security.gate, (session) => followNode(session, scheduler, coordinator, breaker));

  // A replica shows its own nodes to its peers as its API shows them (with their benches).
  const own: OwnNodes = { list: () => api.listNodes(), get: (nodeId) => api.getNode(nodeId) };
  // A replica's API shows the whole cluster: its peers' nodes, its NATS state in /readyz.
  const clusterView = cluster === undefined ? undefined : replicaApiParts(cluster, own, bus, log);
  const api = new PlaneApiImpl({
    config,
    logger: log,
    store,
    owner: EMBEDDED_OWNER,
    bus,
    coordinator,
    scheduler,
    registry,
    intake,
    breaker,
    metrics,
    wakeScheduler,
    controlPlaneId: id,
    ...clusterView,
  });
  const duties =
    cluster === undefined || clusterView === undefined
      ? undefined
      : await startReplicaDuties({
          cluster,
          registry,
          coordinator,
          store,
          own,
          logger: log,
          rebalanceIntervalMs: config.rebalanceIntervalMs,
          shutdownGraceMs: config.shutdownGraceMs,
          reloadQueue: () => scheduler.load(),
          metrics: new ClusterMetrics(metrics.registry),
          remoteViews: clusterView.remoteViews,
        });
  const stopping = new PlaneShutdown({
    logger: log,
    dataDirLock,
    shutdownGraceMs: config.shutdownGraceMs,
    intake,
    scheduler,
    breaker,
    coordinator,
    sessionTokens,
    tokenRegistry,
    stores,
    bus,
    security,
    artifacts: { intake: artifactIntake, store: artifactStore, sweeper: artifactSweeper },
    ...(cluster === undefined
      ? {}
      : {
          cluster: {
            stop: async () => {
              clusterView?.remoteViews.close();
              await duties?.close();
            },
            close: () => cluster.close(),
          },
        }),
  });
  // The actors' last snapshots (ended) reach the inspector before it is closed.
  const shutdown = (reason = 'control plane shutting down'): Promise<void> => stopping.run(reason).finally(() => inspector?.stop());

  const admin = tokenAdmin(tokens, tokenRegistry);
  let httpUrl = '';
  try {
    await listenForNodes(config, (conn) => intake.accept(conn), stopping.servers);
    if (config.http !== LISTENER_OFF) {
      const { host: httpHost, port } = hostPort(config.http);
      const server = await startAdminApi({
        host: httpHost,
        port,
        api,
        tokens,
        tokenAdmin: admin,
        logger: log,
        access: security.adminAccess,
        logKeepaliveMs: config.logKeepaliveMs,
        timeouts: { headersMs: config.apiHeadersTimeoutMs, requestMs: config.apiRequestTimeoutMs },
        bodyLimitBytes: config.apiBodyLimitBytes,
        tokenTtl: { defaultSeconds: config.tokenDefaultTtlSeconds, maxSeconds: config.tokenMaxTtlSeconds },
        artifacts: artifactStore,
      });
      stopping.adminStarted(server);
      httpUrl = server.url;
    }
  } catch (err) {
    // A port taken after others were bound: close what was opened, so nothing keeps running.
    await shutdown('start-up failed');
    throw err;
  }

  const nodeUrls = stopping.servers.map((s) => s.url);
  log.info({ listeners: nodeUrls, http: httpUrl || undefined, payload_encryption: config.encryptKeyFile !== '' }, 'control plane ready');
  const session = (nodeId: string): NodeSession | undefined => {
    const found = registry.get(nodeId);
    return found?.connected === true ? found : undefined;
  };
  return { id, api, nodeUrls, httpUrl, tokens, bus, messages, tokenAdmin: admin, session, shutdown };
}
