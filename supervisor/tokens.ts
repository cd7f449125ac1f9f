// Mints and verifies the JWTs of PROTOCOL.md section 5 (HS256 with the shared secret).
// Every verification failure becomes a MusterError with the protocol's code; no message ever
// carries the token text, so errors can be logged and sent to the peer as they are.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import { MusterError } from '../protocol/errors.js';
import { MIN_SECRET_BYTES } from './secret.js';

export type ApiRole = 'viewer' | 'operator' | 'admin';

export const API_ROLES: readonly ApiRole[] = ['viewer', 'operator', 'admin'];

export const NODE_AUDIENCE = 'muster-node';
export const API_AUDIENCE = 'muster-api';
export const REGISTER_SCOPE = 'node:register';
export const SESSION_SCOPE = 'node:session';

const ALGORITHM = 'HS256';

export interface VerifiedNodeToken {
  /** `registration` for a `node:register` token, `session` for a `node:session` one. */
  kind: 'registration' | 'session';
  /** The token's id, the key for revocation. */
  jti?: string;
  /** Registration: the only hostname allowed to use it. Session: the node id. */
  sub?: string;
  /** Registration only: the node type the token is bound to. */
  nodeType?: string;
}

export interface VerifiedApiToken {
  role: ApiRole;
  /** Who the token was minted for, if anyone. */
  sub?: string;
  jti?: string;
}

export interface NodeTokenExpectation {
  /** `node_info.hostname` of the registering node. */
  hostname: string;
  /** `node_info.node_type` of the registering node. */
  nodeType: string;
  /** `resume.node_id`, when the node reconnects; a session token is accepted only with it. */
  resumeNodeId?: string;
}

export interface TokenAuthorityOptions {
  /** `iss` minted and required; default `muster`. */
  issuer?: string;
  /** Leeway for `exp` and `nbf`, in seconds; default 30. */
  clockToleranceSeconds?: number;
  /** The clock, for tests; default the system clock. */
  now?: () => Date;
}

export class TokenAuthority {
  // A KeyObject made once: with raw bytes jose imports the key again on every sign and verify.
  readonly #key: KeyObject;
  readonly #issuer: string;
  readonly #tolerance: number;
  readonly #now: () => Date;

  constructor(secret: Uint8Array, options: TokenAuthorityOptions = {}) {
    if (secret.length < MIN_SECRET_BYTES) throw new Error(`JWT secret must be at least ${MIN_SECRET_BYTES} bytes`);
    this.#key = createSecretKey(secret);
    this.#issuer = options.issuer ?? 'muster';
    this.#tolerance = options.clockToleranceSeconds ?? 30;
    this.#now = options.now ?? (() => new Date());
  }

  /** A `node:register` token; `sub` pins it to one hostname, `nodeType` to one node type. */
  async mintRegistrationToken(o: { ttlSeconds: number; sub?: string; nodeType?: string }): Promise<string> {
    const claims: JWTPayload = { scope: REGISTER_SCOPE };
    if (o.nodeType !== undefined) claims.node_type = o.nodeType;
    return (await this.#sign(claims, NODE_AUDIENCE, o.ttlSeconds, o.sub)).token;
  }

  /** The `node:session` token of `RegisterAck` / `TokenRefresh`, bound to `nodeId`. */
  async mintSessionToken(nodeId: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }> {
    return this.#sign({ scope: SESSION_SCOPE }, NODE_AUDIENCE, ttlSeconds, nodeId);
  }

  /** An admin HTTP API token (`aud: muster-api`) with `role`. */
  async mintApiToken(o: { role: ApiRole; ttlSeconds: number; sub?: string }): Promise<string> {
    if (!API_ROLES.includes(o.role)) throw new Error(`unknown API role ${String(o.role)}`);
    return (await this.#sign({ role: o.role }, API_AUDIENCE, o.ttlSeconds, o.sub)).token;
  }

  /**
   * Checks the `auth_token` of a `RegisterNode`. A registration token must fit the node's
   * hostname and node type; a session token must name `expect.resumeNodeId`.
   */
  async verifyNodeToken(token: string, expect: NodeTokenExpectation): Promise<VerifiedNodeToken> {
    const payload = await this.#verify(token, NODE_AUDIENCE);
    const jti = optionalString(payload.jti, 'jti');
    const sub = optionalString(payload.sub, 'sub');
    if (payload.scope === REGISTER_SCOPE) {
      const nodeType = optionalString(payload.node_type, 'node_type');
      if (sub !== undefined && sub !== expect.hostname) {
        throw new MusterError('forbidden', 'registration token is bound to another hostname');
      }
      if (nodeType !== undefined && nodeType !== expect.nodeType) {
        throw new MusterError('forbidden', 'registration token is bound to another node type');
      }
      return { kind: 'registration', jti, sub, nodeType };
    }
    if (payload.scope === SESSION_SCOPE) {
      if (expect.resumeNodeId === undefined) {
        throw new MusterError('forbidden', 'a session token is only accepted with resume.node_id');
      }
      if (sub !== expect.resumeNodeId) throw new MusterError('forbidden', 'session token belongs to another node');
      return { kind: 'session', jti, sub };
    }
    throw new MusterError('auth_failed', 'token has no node scope');
  }

  /** Checks an `Authorization: Bearer` token of the admin HTTP API. */
  async verifyApiToken(token: string): Promise<VerifiedApiToken> {
    const payload = await this.#verify(token, API_AUDIENCE);
    const role = payload.role;
    if (typeof role !== 'string' || !(API_ROLES as readonly string[]).includes(role)) {
      throw new MusterError('auth_failed', 'token has no known role');
    }
    return { role: role as ApiRole, sub: optionalString(payload.sub, 'sub'), jti: optionalString(payload.jti, 'jti') };
  }

  async #sign(
    claims: JWTPayload,
    audience: string,
    ttlSeconds: number,
    sub: string | undefined,
  ): Promise<{ token: string; expiresAt: Date }> {
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new Error('token ttl must be a positive number of seconds');
    const iat = Math.floor(this.#now().getTime() / 1000);
    const exp = iat + Math.ceil(ttlSeconds);
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setIssuer(this.#issuer)
      .setAudience(audience)
      .setJti(randomUUID())
      .setIssuedAt(iat)
      .setExpirationTime(exp);
    if (sub !== undefined) jwt.setSubject(sub);
    return { token: await jwt.sign(this.#key), expiresAt: new Date(exp * 1000) };
  }

  async #verify(token: string, audience: string): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, this.#key, {
        algorithms: [ALGORITHM],
        issuer: this.#issuer,
        audience,
        clockTolerance: this.#tolerance,
        currentDate: this.#now(),
        // A token without `exp` would never expire.
        requiredClaims: ['exp'],
      });
      return payload;
    } catch (err) {
      throw toAuthError(err);
    }
  }
}

/**
 * Maps a jose failure to the protocol's code. Our own message, and no `cause`: jose's claim
 * errors carry the decoded payload, which should not travel into logs or to the peer.
 */
function toAuthError(err: unknown): MusterError {
  if (err instanceof errors.JWTExpired) return new MusterError('token_expired', 'token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return new MusterError('auth_failed', 'token not yet valid');
    return new MusterError('auth_failed', `token claim "${err.claim}" rejected (${err.reason})`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new MusterError('auth_failed', 'token algorithm not allowed');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return new MusterError('auth_failed', 'token signature verification failed');
  }
  return new MusterError('auth_failed', 'malformed token');
}

/** A claim that must be a string when present; anything else means the token was not ours. */
function optionalString(value: unknown, claim: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new MusterError('auth_failed', `token claim "${claim}" is not a string`);
  return value;
}
