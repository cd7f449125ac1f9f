// Registration on the plane's side, from a node's RegisterNode to its RegisterAck and back
// out: authentication (the node gate told how it went), the revocation race, binding the
// node id to its session (a newer connection replaces an older one, PROTOCOL.md 4.7), the
// session token and its refresh, the jobs it keeps; and when its actor ends, its burial.
// Both change the fleet's size, which the heartbeat governor hears of (and nothing else does).
import type { NodeOutput, Registration } from '../../actors/node-machine.js';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import type { EnvelopeOf } from '../../protocol/messages.js';
import type { Config } from '../config.js';
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import type { NodeGate } from '../security/node-gate.js';
import type { SessionTokens } from '../tokens/session-tokens.js';
import type { TokenAuthority } from '../tokens/tokens.js';
import type { HeartbeatGovernor } from './heartbeat-governor.js';
import { adoptJobs } from './job-adoption.js';
import { authenticateNode, type Authenticated } from './node-authenticator.js';
import type { NodeRegistry } from './node-registry.js';
import { viewOf } from './node-registry.js';
import type { NodeClaims } from './node-claims.js';
import type { NodeRevocation } from './node-revocation.js';
import type { NodeSession } from './node-session.js';
import { transportOf } from './node-listeners.js';
import { COMPRESS_MIN_BYTES, ackFields, negotiate, offerableFeatures, type Negotiated } from './protocol-versions.js';

export interface RegistrarOptions {
  controlPlaneId: string;
  config: Pick<Config, 'sessionTtlSeconds' | 'encryptKeyFile'>;
  tokens: TokenAuthority;
  gate: NodeGate;
  revocation: NodeRevocation;
  registry: NodeRegistry;
  sessionTokens: SessionTokens<NodeSession>;
  coordinator: JobCoordinator;
  /** Makes this plane the owner of each node before its RegisterAck (a cluster replica may take it from another). */
  claims: NodeClaims;
  /** Keeps the fleet's heartbeat rate in bounds; its interval is the one a RegisterAck gives. */
  heartbeats: HeartbeatGovernor;
  /** Revokes a token id for good (the revocation registry): a deregistered session's tokens. */
  revoke(jti: string, reason: string): Promise<unknown>;
  /** Asks the scheduler for a pass: a node came with room. */
  wakeScheduler(): void;
  /** Counts registrations, new and resumed. */
  metrics?: Pick<PlaneMetrics, 'registered'>;
  /** The plane keeps artifacts (an artifact store is wired): the `artifacts` wire feature may be turned on. */
  artifacts?: boolean;
}

export class Registrar {
  /** Authenticated, not yet acknowledged; with the RegisterNode's `id`, which the RegisterAck answers (PROTOCOL.md section 2). */
  private readonly pending = new WeakMap<NodeSession, Authenticated & { replyTo: string | undefined; agreed: Negotiated }>();

  constructor(private readonly o: RegistrarOptions) {}

  /** Verifies a `RegisterNode` and decides the node id; throws a MusterError to refuse. */
  async authenticate(session: NodeSession, message: EnvelopeOf<'RegisterNode'>): Promise<Registration> {
    const { auth_token: token, resume } = message.data;
    // No version in common: nothing else about the node matters (and no token is spent).
    const offerable = offerableFeatures(transportOf(session.connection), this.o.config.encryptKeyFile !== '', { artifacts: this.o.artifacts === true });
    const agreed = negotiate(message.data, offerable);
    let result: Authenticated;
    try {
      result = await authenticateNode(this.o.tokens, this.o.config.sessionTtlSeconds, message, session.connection.peerNames);
    } catch (err) {
      this.o.gate.authFailed(session.connection, err, token, resume?.node_id);
      throw err;
    }
    // Over the per-address connection rate, only a resumed session is let in (connection probation).
    const refusal = this.o.gate.authenticated(session.connection, result.registration.nodeId, result.presentedJti, result.registration.resumed);
    if (refusal !== undefined) throw refusal;
    // Owned here before it is acknowledged: from the claim on, no other replica writes for its jobs.
    const nodeId = result.registration.nodeId;
    const claim = await this.o.claims.claim(nodeId);
    if (claim.takeover) {
      const taken = await this.o.coordinator.takeOver(nodeId, claim.token);
      if (taken > 0) session.logger.info({ node_id: nodeId, jobs: taken }, 'took the jobs of a node over from its previous replica');
    }
    this.pending.set(session, { ...result, replyTo: message.id, agreed });
    return { ...result.registration, protocolVersion: agreed.version, wireFeatures: agreed.wireFeatures };
  }

  /** The node's actor is online: bind the node, send `RegisterAck`, keep its jobs. */
  registered(session: NodeSession, registration: Registration): void {
    const auth = this.pending.get(session);
    this.pending.delete(session);
    if (auth === undefined) return;
    if (this.o.revocation.revokedMeanwhile(session, auth.tokenIds, auth.replyTo)) return;
    const { nodeId } = registration;
    this.o.registry.bind(nodeId, session)?.actor.send({ type: 'replaced' });
    this.o.heartbeats.fleetChanged();
    session.send('RegisterAck', this.ack(registration, auth), auth.replyTo);
    // Features are used only from the RegisterAck on, which itself goes out as version 1 would send it.
    if (auth.agreed.wireFeatures.includes('deflate')) session.compressFrom(COMPRESS_MIN_BYTES);
    session.turnOn(auth.agreed.wireFeatures);
    if (auth.agreed.wireFeatures.includes('batch')) session.useBatches();
    this.o.metrics?.registered(registration.resumed);
    // The actor learns the interval its RegisterAck gave (it was created with the base one).
    this.o.heartbeats.tell(session, false);
    this.o.sessionTokens.track(session, {
      nodeId,
      tokenIds: auth.tokenIds,
      registrationJti: auth.registrationJti,
      session: auth.session,
    });
    const kept = adoptJobs(this.o.coordinator, session, nodeId, auth);
    if (session.logs('info')) {
      session.logger.info(
        { node_id: nodeId, hostname: registration.info.hostname, resumed: registration.resumed, kept_jobs: kept },
        'node registered',
      );
    }
    this.o.wakeScheduler();
  }

  /** The node's actor ended: forget its session; when it is gone for good, its jobs go back to the queue. */
  ended(session: NodeSession, output: NodeOutput): void {
    const sessionJtis = this.o.sessionTokens.sessionTokenIdsOf(session);
    this.o.sessionTokens.forget(session);
    const { nodeId, reason } = output;
    if (nodeId === undefined) return;
    // A session replaced here was unbound by the newer one's bind: nothing else is its to undo.
    if (!this.o.registry.unbind(nodeId, session)) return;
    // Replaced (on another replica of a cluster) or shut down (shed to another): it lives on, not dead.
    if (reason !== 'replaced' && reason !== 'shutdown') this.o.registry.buryNode(viewOf(nodeId, session, this.o.controlPlaneId, []));
    this.o.heartbeats.fleetChanged();
    if (session.logs('info')) session.logger.info({ node_id: nodeId, reason }, 'node gone');
    // Replaced or shut down: the node lives on elsewhere, or comes back to resume its jobs.
    if (reason === 'expired' || reason === 'deregistered' || reason === 'failed') this.o.coordinator.nodeGone(nodeId, `node ${reason}`);
    if (reason === 'deregistered') this.revokeSession(session, nodeId, sessionJtis);
  }

  /** A session ends with `Deregister`: its session tokens are refused from then on, across restarts. */
  private revokeSession(session: NodeSession, nodeId: string, jtis: readonly string[]): void {
    for (const jti of jtis) {
      this.o.revoke(jti, 'deregistered').catch((err: unknown) => {
        session.logger.error({ err, node_id: nodeId, jti }, "could not revoke a deregistered node's session token");
      });
    }
  }

  private ack(registration: Registration, auth: Authenticated & { agreed: Negotiated }): EnvelopeOf<'RegisterAck'>['data'] {
    return {
      node_id: registration.nodeId,
      session_token: auth.session.token,
      session_expires_at: auth.session.expiresAt.toISOString(),
      heartbeat_interval_ms: this.o.heartbeats.intervalMs,
      control_plane_id: this.o.controlPlaneId,
      resumed: registration.resumed,
      ...ackFields(auth.agreed),
    };
  }
}
