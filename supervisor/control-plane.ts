// The control plane, wired: listeners → node sessions (one actor each) → registry,
// job coordinator, scheduler, job store, bus, and the admin HTTP API.
// `startControlPlane` is what `muster serve` and the integration tests run.
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { reservedBy, type NodeOutput, type Registration } from '../actors/node-machine.js';
import { CODEC_JSON, encodeBody } from '../protocol/codec.js';
import { MusterError, toMusterError } from '../protocol/errors.js';
import type { EnvelopeOf } from '../protocol/messages.js';
import type { Connection, TransportServer } from '../transports/transport.js';
import { startAdminApi, type AdminApi } from './admin/api-server.js';
import { LISTENER_OFF, type Config } from './config.js';
import { checkConfig } from './config-ranges.js';
import { JobCoordinator } from './jobs/job-coordinator.js';
import type { JobState, NewJob } from './store/job-store.js';
import type { NodeCapacity } from './jobs/job-matcher.js';
import { LocalBus } from './bus/local-bus.js';
import { authenticateNode, type Authenticated } from './nodes/node-authenticator.js';
import { hostPort, listenForNodes } from './nodes/node-listeners.js';
import { NodeRegistry, viewOf } from './nodes/node-registry.js';
import { NodeSession, type SessionHost } from './nodes/node-session.js';
import type { NodeState } from '../actors/node-machine.js';
import type { PlaneApi } from './admin/plane-api.js';
import { createPlaneSecurity } from './security/plane-security.js';
import { renderMetrics } from './admin/plane-metrics.js';
import { Scheduler } from './jobs/scheduler.js';
import { SessionTokens } from './tokens/session-tokens.js';
import { SqliteJobStore, storePath } from './store/sqlite-job-store.js';
import { tokenAdmin, TokenRegistry } from './tokens/token-registry.js';
import { tokenAuthorityFromConfig } from './tokens/token-setup.js';
import type { TokenAuthority } from './tokens/tokens.js';

export interface ControlPlane {
  readonly id: string;
  readonly api: PlaneApi;
  /** Node listener URLs actually bound (`tcp://127.0.0.1:7420`, `unix:///...`). */
  readonly nodeUrls: string[];
  readonly httpUrl: string;
  readonly tokens: TokenAuthority;
  /** Sends `Shutdown` to every node, stops listening, closes the store. */
  shutdown(reason?: string): Promise<void>;
}

export async function startControlPlane(config: Config, logger: Logger): Promise<ControlPlane> {
  // Every setting in its range, or nothing starts (the error names each bad setting's source).
  checkConfig(config);
  mkdirSync(config.dataDir, { recursive: true });
  const id = config.controlPlaneId || `${hostname()}-${randomUUID().slice(0, 8)}`;
  const log = logger.child({ control_plane_id: id });
  // Allow-lists, bans, rate limits and the audit log; a bad CIDR setting fails here.
  const security = createPlaneSecurity(config, log);
  // Revocations are read in memory on every check; `tokenRegistry` is ready before any token is.
  const tokens = tokenAuthorityFromConfig(config, { isRevoked: (jti) => tokenRegistry.isRevoked(jti) });
  const store = SqliteJobStore.open(storePath(config.dataDir));
  const tokenRegistry = await TokenRegistry.open({
    store,
    logger: log,
    pollMs: config.revocationPollMs,
    onRevoked: (revocation) => disconnectRevoked(revocation.jti),
  });
  const sessionTokens = new SessionTokens<NodeSession>({
    tokens,
    sessionTtlSeconds: config.sessionTtlSeconds,
    record: (info) => tokenRegistry.record(info),
    logger: log,
  });
  const bus = new LocalBus((err) => log.error({ err }, 'bus subscriber failed'));
  const registry = new NodeRegistry(id);
  const sessions = new Set<NodeSession>();
  // With the RegisterNode's `id`: the RegisterAck answers it as `reply_to` (PROTOCOL.md section 2).
  const pendingAcks = new WeakMap<NodeSession, Authenticated & { replyTo: string | undefined }>();
  const counters = { messagesReceived: 0, messagesSent: 0 };
  const livenessMs = config.heartbeatIntervalMs * (config.missedHeartbeats + 1);
  let shuttingDown = false;

  const scheduler: Scheduler = new Scheduler({
    store,
    logger: log,
    capacities: () => capacities(registry),
    assign: async (job, nodeId) => {
      const session = registry.get(nodeId);
      return session !== undefined && (await coordinator.assign(job, session, nodeId));
    },
    expire: async (job) => {
      if (await store.finish(job.job_id, job.attempt, 'TimedOut', 'deadline passed while queued')) {
        bus.publish({ kind: 'job', job_id: job.job_id, state: 'TimedOut', attempt: job.attempt });
      }
    },
  });
  const coordinator: JobCoordinator = new JobCoordinator({
    store,
    bus,
    logger: log,
    acceptTimeoutMs: config.acceptTimeoutMs,
    orphanGraceMs: livenessMs,
    sessionOf: (nodeId) => registry.get(nodeId),
    wakeScheduler: () => scheduler.wake(),
  });
  await coordinator.recover();

  const host: SessionHost = {
    logger: log,
    counters,
    timing: {
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      missedHeartbeats: config.missedHeartbeats,
      registerTimeoutMs: config.registerTimeoutMs,
    },
    authenticate: async (session, message): Promise<Registration> => {
      const { auth_token: token, resume } = message.data;
      let result: Authenticated;
      try {
        result = await authenticateNode(tokens, config.sessionTtlSeconds, message, session.connection.peerNames);
      } catch (err) {
        security.gate.authFailed(session.connection, err, token, resume?.node_id);
        throw err;
      }
      security.gate.authenticated(session.connection, result.registration.nodeId, token, result.registration.resumed);
      pendingAcks.set(session, { ...result, replyTo: message.id });
      return result.registration;
    },
    rates: security.nodeRates,
    connectionClosed: (session, reason) => security.gate.closed(session.connection, session.nodeId, reason),
    rateLimited: (session, verdict, dropped) => {
      security.gate.rateLimited(session.connection, session.nodeId, dropped);
      return verdict === 'abuse' ? security.gate.abusive(session.connection, session.nodeId, dropped) : undefined;
    },
    registered: (session, registration) => registered(session, registration),
    jobMessage: (session, message) => {
      const nodeId = session.nodeId;
      if (nodeId === undefined) return;
      coordinator.handle(session, nodeId, message).catch((err: unknown) => {
        session.logger.error({ err, node_id: nodeId, type: message.type }, 'job message failed');
        session.sendError(toMusterError(err), message.id);
      });
    },
    stateChanged: (session, state) => {
      const nodeId = session.nodeId;
      if (nodeId !== undefined) bus.publish({ kind: 'node', node_id: nodeId, state, owner: id });
      if (state === 'ready') scheduler.wake();
    },
    ended: (session, output) => ended(session, output),
  };

  function registered(session: NodeSession, registration: Registration): void {
    const auth = pendingAcks.get(session);
    pendingAcks.delete(session);
    if (auth === undefined) return;
    // A token revoked while this node was being authenticated: its revocation found no session yet.
    if (auth.tokenIds.some((jti) => tokenRegistry.isRevoked(jti))) {
      void session.closeWith(new MusterError('token_revoked', 'token has been revoked', { replyTo: auth.replyTo }));
      return;
    }
    const { nodeId } = registration;
    const previous = registry.bind(nodeId, session);
    previous?.actor.send({ type: 'replaced' });
    const ack: EnvelopeOf<'RegisterAck'>['data'] = {
      node_id: nodeId,
      session_token: auth.session.token,
      session_expires_at: auth.session.expiresAt.toISOString(),
      heartbeat_interval_ms: config.heartbeatIntervalMs,
      protocol_version: 1,
      control_plane_id: id,
      resumed: registration.resumed,
    };
    session.send('RegisterAck', ack, auth.replyTo);
    sessionTokens.track(session, {
      nodeId,
      tokenIds: auth.tokenIds,
      registrationJti: auth.registrationJti,
      session: auth.session,
    });
    const kept = coordinator.adopt(nodeId, auth.keepJobs);
    for (const [jobId, slot] of Object.entries(kept)) session.actor.send({ type: 'job.assigned', jobId, slot });
    coordinator.cancelStale(session, nodeId, auth.runningJobs).catch((err: unknown) => {
      session.logger.error({ err, node_id: nodeId }, 'cancelling stale attempts failed');
    });
    session.logger.info(
      { node_id: nodeId, hostname: registration.info.hostname, resumed: registration.resumed, kept_jobs: Object.keys(kept).length },
      'node registered',
    );
    scheduler.wake();
  }

  function ended(session: NodeSession, output: NodeOutput): void {
    sessions.delete(session);
    sessionTokens.forget(session);
    const { nodeId, reason } = output;
    if (nodeId === undefined) return;
    const view = viewOf(nodeId, session, id, []);
    if (!registry.unbind(nodeId, session)) return;
    registry.buryNode(view);
    session.logger.info({ node_id: nodeId, reason }, 'node gone');
    if (reason === 'expired' || reason === 'deregistered') coordinator.nodeGone(nodeId, `node ${reason}`);
  }

  /** Every node standing on a revoked token is told `token_revoked` and closed at once. */
  function disconnectRevoked(jti: string): void {
    for (const session of sessionTokens.sessionsWith(jti)) {
      session.logger.warn({ node_id: session.nodeId, jti }, 'token revoked; disconnecting node');
      sessionTokens.forget(session);
      void session.closeWith(new MusterError('token_revoked', 'token has been revoked'));
    }
  }

  function accept(conn: Connection): void {
    if (shuttingDown) {
      refuse(conn, new MusterError('shutting_down', 'the control plane is stopping'));
      return;
    }
    // Before any frame is read: the allow-list, bans and per-address limits.
    const refusal = security.gate.admit(conn);
    if (refusal !== undefined) {
      refuse(conn, refusal);
      return;
    }
    const session = new NodeSession(conn, host);
    sessions.add(session);
    session.start();
  }

  const api: PlaneApi = {
    defaults: { maxAttempts: config.maxAttempts, jobTimeoutMs: config.defaultJobTimeoutMs, maxFrameBytes: config.maxFrameBytes },
    submitJob: async (job: NewJob) => {
      const record = await store.submit(job);
      log.info({ job_id: record.job_id, priority: record.priority }, 'job submitted');
      bus.publish({ kind: 'job', job_id: record.job_id, state: record.state, attempt: record.attempt });
      scheduler.wake();
      return record;
    },
    getJob: (jobId) => store.get(jobId),
    jobLogs: async (jobId, after) => ((await store.get(jobId)) === undefined ? undefined : store.logs(jobId, after)),
    cancelJob: (jobId) => coordinator.cancel(jobId),
    listNodes: () => registry.views((nodeId) => coordinator.runningJobIds(nodeId)),
    drainNode: (nodeId) => {
      const session = registry.get(nodeId);
      if (session === undefined) return false;
      session.actor.send({ type: 'drain' });
      return true;
    },
    stats: async () => ({
      active_connections: sessions.size,
      total_messages_sent: counters.messagesSent,
      total_messages_received: counters.messagesReceived,
      nodes: registry.size,
      ...prefixed('jobs_', await store.counts()),
    }),
    metrics: async () =>
      renderMetrics({
        connections: sessions.size,
        messagesReceived: counters.messagesReceived,
        messagesSent: counters.messagesSent,
        nodes: nodeCounts(registry),
        jobs: await store.counts(),
      }),
    isReady: () => !shuttingDown,
  };

  /** Sends `Shutdown` to every node, stops listening, closes the store; also undoes a failed start. */
  async function shutdown(reason = 'control plane shutting down'): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    scheduler.stop();
    await Promise.all(servers.map((s) => s.close()));
    // Taken before the loop: each actor that ends removes its session from `sessions`.
    const open = [...sessions];
    for (const session of open) {
      session.send('Shutdown', { reason, grace_period_ms: config.shutdownGraceMs });
      session.actor.send({ type: 'shutdown' });
    }
    await Promise.all(open.map((s) => s.connection.close()));
    coordinator.close();
    sessionTokens.close();
    tokenRegistry.close();
    await admin?.close();
    await store.close();
    await bus.close();
    security.close();
    log.info({ reason }, 'control plane stopped');
  }

  const servers: TransportServer[] = [];
  let admin: AdminApi | undefined;
  try {
    // Into `servers` as each opens, so that a failure part-way closes those already open.
    await listenForNodes(config, accept, servers);
    if (config.http !== LISTENER_OFF) {
      const { host: httpHost, port } = hostPort(config.http);
      admin = await startAdminApi({
        host: httpHost,
        port,
        api,
        tokens,
        tokenAdmin: tokenAdmin(tokens, tokenRegistry),
        logger: log,
        access: security.adminAccess,
        timeouts: { headersMs: config.apiHeadersTimeoutMs, requestMs: config.apiRequestTimeoutMs },
        bodyLimitBytes: config.apiBodyLimitBytes,
      });
    }
  } catch (err) {
    // A port taken after others were bound: close what was opened, so nothing keeps running.
    await shutdown('start-up failed');
    throw err;
  }

  const nodeUrls = servers.map((s) => s.url);
  log.info({ listeners: nodeUrls, http: admin?.url, payload_encryption: config.encryptKeyFile !== '' }, 'control plane ready');

  return {
    id,
    api,
    nodeUrls,
    httpUrl: admin?.url ?? '',
    tokens,
    shutdown,
  };
}

function capacities(registry: NodeRegistry): NodeCapacity[] {
  const nodes: NodeCapacity[] = [];
  for (const session of registry.sessionsList()) {
    const context = session.actor.getSnapshot().context;
    const registration = context.registration;
    if (registration === undefined || session.connection.isClosed || session.state !== 'ready') continue;
    nodes.push({
      nodeId: registration.nodeId,
      runnerTypes: registration.capabilities.runner_types,
      supportedJobTypes: registration.capabilities.supported_job_types,
      tags: registration.info.tags,
      maxResources: context.max,
      used: reservedBy(context.jobs),
      runningJobs: Object.keys(context.jobs).length,
      accepting: true,
    });
  }
  return nodes;
}

function nodeCounts(registry: NodeRegistry): Record<NodeState, number> {
  const counts: Record<NodeState, number> = { registering: 0, ready: 0, busy: 0, draining: 0, dead: 0 };
  for (const session of registry.sessionsList()) counts[session.state]++;
  return counts;
}

function prefixed(prefix: string, counts: Record<JobState, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [`${prefix}${k}`, v]));
}

function refuse(conn: Connection, err: MusterError): void {
  conn.start({ frame: () => {}, error: () => {}, closed: () => {} });
  conn.send(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Error', data: err.toData() }));
  void conn.close();
}
