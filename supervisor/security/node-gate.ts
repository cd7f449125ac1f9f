// The node listeners' door: which connections may come in (the `nodeAllowCidrs` allow-list,
// address bans, per-address connection and failed-registration limits), what happens to a node
// that floods, and the audit lines of a node connection's life (opened, authenticated or not,
// rate limited, closed). The control plane asks it before a session starts and tells it what
// happened after. A node that authenticates gets its own `auth_succeeded` and
// `connection_closed` lines; connections that never do are aggregated per address and minute
// (opened, closed, refused), so a flood of connections is a few lines, not one per try.
//
// Codes: an address outside the allow-list gets `forbidden` (fatal: it will not be let in
// however often it tries). Over a limit, and while banned, an address gets `rate_limited`: the
// code PROTOCOL.md gives for going over a rate, where "repeated abuse may close", and non-fatal,
// i.e. "back off and try again later", which is what a temporary ban means. `forbidden` would
// also make the agent drop its session token (agent.ts), turning a five-minute ban into a lost
// session.
//
// The Unix socket reports no peer address: it is always allowed and has no per-address limits
// (whoever can open it already has file-system access to the plane's data directory).
import { decodeJwt } from 'jose';
import { MusterError } from '../../protocol/errors.js';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import type { Connection } from '../../transports/transport.js';
import type { AddressGuard } from './address-guard.js';
import type { AuditSink } from './audit-log.js';
import type { CidrList } from './cidr-list.js';
import { addressKey, peerIp } from './peer-address.js';

export interface NodeGateOptions {
  allow: CidrList;
  guard: AddressGuard;
  audit: AuditSink;
  /** Counts refused authentications and connections; undefined: not counted. */
  metrics?: Pick<PlaneMetrics, 'authFailed' | 'rateLimited'>;
}

const JTI = /^[\w.:-]{1,128}$/;

export class NodeGate {
  /** Connections let in over the connection rate, by the address they count against, until their first registration says what they are. */
  private readonly probation = new WeakMap<Connection, string>();

  constructor(private readonly options: NodeGateOptions) {}

  /** A new connection: undefined lets it in (audited), else the error to refuse it with before reading any frame. */
  admit(conn: Connection): MusterError | undefined {
    const { allow, guard, audit } = this.options;
    const ip = peerIp(conn.remoteAddress);
    if (ip === undefined && !isUnixSocket(conn.remoteAddress) && !allow.allowsAll) {
      // An address we cannot read cannot be shown to be on the list.
      return this.deny(conn.remoteAddress, conn, 'peer address unknown');
    }
    if (ip !== undefined) {
      if (!allow.allows(ip)) return this.deny(ip, conn, 'address not in nodeAllowCidrs');
      const admission = guard.admitConnection(ip, { correlation_id: conn.id });
      if (admission === 'banned') {
        this.options.metrics?.rateLimited('node_banned');
        return new MusterError('rate_limited', `this address is banned for ${guard.bannedSeconds(ip)} s; retry later`);
      }
      if (admission === 'rate_limited') {
        this.options.metrics?.rateLimited('node_connection');
        return new MusterError('rate_limited', 'too many connection attempts or failed registrations from this address; retry later');
      }
      if (admission === 'probation') this.probation.set(conn, ip);
    }
    // Throttled per address: a burst of connections is one line (with the count of the rest on
    // the next); every node that authenticates still gets its own auth_succeeded and close lines.
    const address = addressOf(conn);
    audit.recordThrottled(`connection_opened|${ip === undefined ? address : addressKey(ip)}`, {
      event: 'connection_opened',
      address,
      correlation_id: conn.id,
    });
    return undefined;
  }

  /**
   * A `RegisterNode` was accepted; `jti` is the verified id of the token it came with (read
   * from the verification, not decoded again). Returns the error to refuse it with after all: a
   * connection over the connection rate is let in only to resume a session.
   */
  authenticated(conn: Connection, nodeId: string, jti: string | undefined, resumed: boolean): MusterError | undefined {
    const refusal = this.endProbation(conn, resumed);
    if (refusal !== undefined) return refusal;
    this.options.audit.record({
      event: 'auth_succeeded',
      address: addressOf(conn),
      node_id: nodeId,
      jti: jti !== undefined && JTI.test(jti) ? jti : undefined,
      correlation_id: conn.id,
      reason: resumed ? 'session resumed' : 'registered',
    });
    return undefined;
  }

  /** A `RegisterNode` was refused with `err`: counted against the address (which audits it, aggregated). */
  authFailed(conn: Connection, err: unknown, token: string, resumeNodeId: string | undefined): void {
    this.endProbation(conn, false);
    const code = err instanceof MusterError ? err.code : 'internal';
    // Not an authentication failure: the plane's own fault must not count against the node's address.
    if (code === 'internal' || code === 'shutting_down') return;
    this.options.metrics?.authFailed('node', code);
    const context = {
      correlation_id: conn.id,
      node_id: resumeNodeId,
      jti: claimedJti(token),
      code,
      reason: err instanceof MusterError ? err.message : 'refused',
    };
    const ip = peerIp(conn.remoteAddress);
    if (ip !== undefined) this.options.guard.authFailed(ip, context);
    else this.options.audit.recordThrottled(`auth_failed|${addressOf(conn)}`, { event: 'auth_failed', address: addressOf(conn), ...context });
  }

  /** The node was answered `rate_limited` for its message or byte rate (throttled per address). */
  rateLimited(conn: Connection, nodeId: string | undefined, dropped: number): void {
    const address = addressOf(conn);
    this.options.audit.recordThrottled(`rate_limited|${address}`, {
      event: 'rate_limited',
      address,
      node_id: nodeId,
      correlation_id: conn.id,
      code: 'rate_limited',
      reason: `over the node message or byte rate; ${dropped} frames dropped`,
    });
  }

  /** The node went on flooding after being told: its address is banned; returns the error to close the connection with. */
  abusive(conn: Connection, nodeId: string | undefined, dropped: number): MusterError {
    const ip = peerIp(conn.remoteAddress);
    const reason = `kept over the node message or byte rate (${dropped} frames dropped)`;
    if (ip === undefined) return new MusterError('rate_limited', `${reason}; closing`);
    const { guard } = this.options;
    guard.ban(ip, { correlation_id: conn.id, node_id: nodeId, reason });
    return new MusterError('rate_limited', `${reason}; this address is banned for ${guard.bannedSeconds(ip)} s`);
  }

  /** The session ended: its own line for a node that registered, else one line per address a window. */
  closed(conn: Connection, nodeId: string | undefined, reason: string): void {
    this.endProbation(conn, false);
    const address = addressOf(conn);
    const event = { event: 'connection_closed', address, node_id: nodeId, correlation_id: conn.id, reason } as const;
    if (nodeId !== undefined) this.options.audit.record(event);
    else this.options.audit.recordThrottled(`connection_closed|${address}`, { ...event, reason: `${reason} before registering` });
  }

  /** Settles a connection on probation, if this is one: undefined when it may stay. */
  private endProbation(conn: Connection, resumed: boolean): MusterError | undefined {
    const ip = this.probation.get(conn);
    if (ip === undefined) return undefined;
    this.probation.delete(conn);
    const admission = this.options.guard.probationEnded(ip, resumed, { correlation_id: conn.id });
    if (admission === 'ok') return undefined;
    this.options.metrics?.rateLimited('node_connection');
    return new MusterError('rate_limited', 'too many connection attempts from this address: over the rate only resumed sessions are let in; retry later');
  }

  private deny(address: string, conn: Connection, reason: string): MusterError {
    this.options.audit.recordThrottled(`access_denied|${address}`, {
      event: 'access_denied',
      address,
      correlation_id: conn.id,
      code: 'forbidden',
      reason,
    });
    return new MusterError('forbidden', 'this address may not connect to the control plane');
  }
}

function isUnixSocket(remoteAddress: string): boolean {
  return remoteAddress.startsWith('/');
}

/** The IP of the peer, or the socket path of a Unix connection. */
function addressOf(conn: Connection): string {
  return peerIp(conn.remoteAddress) ?? conn.remoteAddress;
}

/** The `jti` a token claims (read, not verified: for the audit line only); undefined if none or odd. */
function claimedJti(token: string): string | undefined {
  try {
    const jti = decodeJwt(token).jti;
    return typeof jti === 'string' && JTI.test(jti) ? jti : undefined;
  } catch {
    return undefined;
  }
}
