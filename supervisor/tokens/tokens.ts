// Mints and verifies the JWTs of PROTOCOL.md section 5: minted HS256 with the current shared
// secret (its `kid` in the header), signed as jose would sign them but without WebCrypto
// (hs256-signer.ts); verified, when the plane signed them, the same way with node:crypto
// (hs256-verifier.ts), else by jose with the key the header names (token-keys.ts), within an
// allow-list of algorithms; then checked against the revocation list.
// Every verification failure becomes a MusterError with the protocol's code; no message ever
// carries the token text, so errors can be logged and sent to the peer as they are.
import { randomUUID } from 'node:crypto';
import { errors, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';
import { MusterError } from '../../protocol/errors.js';
import type { TokenInfo } from '../store/token-store.js';
import { VerifiedTokenCache } from './verified-token-cache.js';
import { KeyRing, TOKEN_ALGORITHMS, type JwksResolver, type TokenAlgorithm } from './token-keys.js';

export type ApiRole = 'viewer' | 'operator' | 'admin';

export const API_ROLES: readonly ApiRole[] = ['viewer', 'operator', 'admin'];

export const NODE_AUDIENCE = 'muster-node';
export const API_AUDIENCE = 'muster-api';
export const REGISTER_SCOPE = 'node:register';
export const SESSION_SCOPE = 'node:session';
/** Session-token claim: the `jti` of the registration token the session descends from. */
export const REGISTRATION_JTI_CLAIM = 'reg_jti';

export interface VerifiedNodeToken {
  /** `registration` for a `node:register` token, `session` for a `node:session` one. */
  kind: 'registration' | 'session';
  /** The token's id, the key for revocation. */
  jti?: string;
  /** Registration: the only hostname allowed to use it. Session: the node id. */
  sub?: string;
  /** Registration only: the node type the token is bound to. */
  nodeType?: string;
  /** Session only: the `jti` of the registration token it descends from (revoking that ends it too). */
  registrationJti?: string;
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
  /** Earlier secrets: tokens they signed (with their `kid`) still verify; nothing is signed with them. */
  previousSecrets?: readonly Uint8Array[];
  /** The key set for EdDSA and ES256 tokens; without it those are refused. */
  jwks?: JwksResolver;
  /** Algorithms accepted; default HS256, EdDSA and ES256. */
  algorithms?: readonly TokenAlgorithm[];
  /** True for a revoked `jti`: such a token is refused with `token_revoked`. Must be cheap. */
  isRevoked?: (jti: string) => boolean;
  /**
   * How long an HS256 registration or API token, once verified, is trusted by its text without
   * verifying its signature again (expiry and revocation are still checked on every use); default 0: never.
   */
  verifiedCacheTtlMs?: number;
  /** Most tokens so trusted at once; default 1,000. */
  verifiedCacheEntries?: number;
  /**
   * Verify the plane's own HS256 tokens with node:crypto (hs256-verifier.ts), leaving the rest to
   * jose; default true. False: jose verifies every token (the tests compare the two).
   */
  nativeHs256?: boolean;
}

/** What `mint` answers: the token, and what may be recorded of it (never the token itself). */
export interface MintedToken {
  token: string;
  info: TokenInfo;
}

/** A token to mint: `node` is a registration token, any other role an admin API token. */
export interface MintRequest {
  role: 'node' | ApiRole;
  ttlSeconds: number;
  sub?: string;
  /** `node` only. */
  nodeType?: string;
}

interface Signed {
  token: string;
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

export class TokenAuthority {
  // Keys imported once (token-keys.ts): otherwise jose imports the key again on every sign and verify.
  readonly #keys: KeyRing;
  readonly #algorithms: TokenAlgorithm[];
  readonly #issuer: string;
  readonly #tolerance: number;
  readonly #now: () => Date;
  readonly #isRevoked: (jti: string) => boolean;
  readonly #verified: VerifiedTokenCache;
  readonly #native: boolean;
  #signatureChecks = 0;
  #nativeChecks = 0;

  constructor(secret: Uint8Array, options: TokenAuthorityOptions = {}) {
    this.#keys = new KeyRing(secret, { previous: options.previousSecrets, jwks: options.jwks });
    this.#algorithms = [...(options.algorithms ?? TOKEN_ALGORITHMS)];
    this.#issuer = options.issuer ?? 'muster';
    this.#tolerance = options.clockToleranceSeconds ?? 30;
    this.#now = options.now ?? (() => new Date());
    this.#isRevoked = options.isRevoked ?? (() => false);
    this.#native = options.nativeHs256 !== false && this.#algorithms.includes('HS256');
    this.#verified = new VerifiedTokenCache({
      ttlMs: options.verifiedCacheTtlMs ?? 0,
      maxEntries: options.verifiedCacheEntries ?? 1_000,
      toleranceSeconds: this.#tolerance,
    });
  }

  /** Signatures checked so far (a token trusted from the cache needs none): for tests. */
  get signatureChecks(): number {
    return this.#signatureChecks;
  }

  /** Of those, the ones node:crypto settled (hs256-verifier.ts) without jose: for tests. */
  get nativeSignatureChecks(): number {
    return this.#nativeChecks;
  }

  /** The `kid` put on every token minted now. */
  get keyId(): string {
    return this.#keys.signing.kid;
  }

  /** A `node:register` token; `sub` pins it to one hostname, `nodeType` to one node type. */
  async mintRegistrationToken(o: { ttlSeconds: number; sub?: string; nodeType?: string }): Promise<string> {
    return (await this.mint({ role: 'node', ...o })).token;
  }

  /**
   * The `node:session` token of `RegisterAck` / `TokenRefresh`, bound to `nodeId`;
   * `registrationJti` ties it to the registration token the node first came with.
   */
  async mintSessionToken(
    nodeId: string,
    ttlSeconds: number,
    registrationJti?: string,
  ): Promise<{ token: string; expiresAt: Date; jti: string; info: TokenInfo }> {
    const claims: JWTPayload = { scope: SESSION_SCOPE };
    if (registrationJti !== undefined) claims[REGISTRATION_JTI_CLAIM] = registrationJti;
    const signed = this.#sign(claims, NODE_AUDIENCE, ttlSeconds, nodeId);
    return { token: signed.token, expiresAt: signed.expiresAt, jti: signed.jti, info: infoOf(signed, 'session', nodeId) };
  }

  /** An admin HTTP API token (`aud: muster-api`) with `role`. */
  async mintApiToken(o: { role: ApiRole; ttlSeconds: number; sub?: string }): Promise<string> {
    return (await this.mint(o)).token;
  }

  /** A registration or API token, with what may be recorded of it. */
  async mint(o: MintRequest): Promise<MintedToken> {
    if (o.role === 'node') {
      const claims: JWTPayload = { scope: REGISTER_SCOPE };
      if (o.nodeType !== undefined) claims.node_type = o.nodeType;
      const signed = this.#sign(claims, NODE_AUDIENCE, o.ttlSeconds, o.sub);
      return { token: signed.token, info: infoOf(signed, 'node', o.sub, o.nodeType) };
    }
    if (!API_ROLES.includes(o.role)) throw new Error(`unknown API role ${String(o.role)}`);
    if (o.nodeType !== undefined) throw new Error('a node type only applies to node registration tokens');
    const signed = this.#sign({ role: o.role }, API_AUDIENCE, o.ttlSeconds, o.sub);
    return { token: signed.token, info: infoOf(signed, o.role, o.sub) };
  }

  /**
   * Checks the `auth_token` of a `RegisterNode`. A registration token must fit the node's
   * hostname and node type; a session token must name `expect.resumeNodeId`.
   */
  async verifyNodeToken(token: string, expect: NodeTokenExpectation): Promise<VerifiedNodeToken> {
    // Session tokens are one per node and seldom presented twice: only registration tokens are kept.
    const payload = await this.#verify(token, NODE_AUDIENCE, (p) => p.scope === REGISTER_SCOPE);
    const jti = optionalString(payload.jti, 'jti');
    const sub = optionalString(payload.sub, 'sub');
    if (payload.scope === REGISTER_SCOPE) {
      this.#checkRevoked(jti);
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
      const registrationJti = optionalString(payload[REGISTRATION_JTI_CLAIM], REGISTRATION_JTI_CLAIM);
      this.#checkRevoked(jti, registrationJti);
      const verified: VerifiedNodeToken = { kind: 'session', jti, sub };
      if (registrationJti !== undefined) verified.registrationJti = registrationJti;
      return verified;
    }
    throw new MusterError('auth_failed', 'token has no node scope');
  }

  /** Checks an `Authorization: Bearer` token of the admin HTTP API. */
  async verifyApiToken(token: string): Promise<VerifiedApiToken> {
    const payload = await this.#verify(token, API_AUDIENCE, () => true);
    const role = payload.role;
    if (typeof role !== 'string' || !(API_ROLES as readonly string[]).includes(role)) {
      throw new MusterError('auth_failed', 'token has no known role');
    }
    this.#checkRevoked(optionalString(payload.jti, 'jti'));
    return { role: role as ApiRole, sub: optionalString(payload.sub, 'sub'), jti: optionalString(payload.jti, 'jti') };
  }

  /** Signed now, synchronously (hs256-signer.ts): the claims in the order jose's `SignJWT` setters give them. */
  #sign(claims: JWTPayload, audience: string, ttlSeconds: number, sub: string | undefined): Signed {
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new Error('token ttl must be a positive number of seconds');
    const iat = Math.floor(this.#now().getTime() / 1000);
    const exp = iat + Math.ceil(ttlSeconds);
    const jti = randomUUID();
    const payload: JWTPayload = { ...claims, iss: this.#issuer, aud: audience, jti, iat, exp };
    if (sub !== undefined) payload.sub = sub;
    return { token: this.#keys.signer.sign(payload), jti, issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
  }

  /** Refuses the token when any of its ids (its own `jti`, the registration it descends from) is revoked. */
  #checkRevoked(...jtis: (string | undefined)[]): void {
    for (const jti of jtis) {
      if (jti !== undefined && this.#isRevoked(jti)) throw new MusterError('token_revoked', 'token has been revoked');
    }
  }

  /** The token's payload, verified now or (HS256, `keep`) a moment ago; the callers check revocation on each use. */
  async #verify(token: string, audience: string, keep: (payload: JWTPayload) => boolean): Promise<JWTPayload> {
    const nowMs = this.#now().getTime();
    const known = this.#verified.get(audience, token, nowMs);
    if (known !== undefined) return known;
    this.#signatureChecks++;
    const ours = this.#native ? this.#keys.verifier.verify(token, { issuer: this.#issuer, audience, toleranceSeconds: this.#tolerance, nowMs }) : undefined;
    if (ours !== undefined) {
      this.#nativeChecks++;
      if (keep(ours)) this.#verified.set(audience, token, ours, nowMs);
      return ours;
    }
    try {
      const { payload, protectedHeader } = await jwtVerify(token, (header, input) => this.#keys.resolve(header, input), {
        algorithms: this.#algorithms,
        issuer: this.#issuer,
        audience,
        clockTolerance: this.#tolerance,
        currentDate: this.#now(),
        // A token without `exp` would never expire.
        requiredClaims: ['exp'],
      });
      // Our own secrets never change under this authority; a JWKS key may be withdrawn, so those are checked each time.
      if (protectedHeader.alg === 'HS256' && keep(payload)) this.#verified.set(audience, token, payload, nowMs);
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
  // Our own refusals (key resolution) are already worded for the peer.
  if (err instanceof MusterError) return err;
  if (err instanceof errors.JWKSNoMatchingKey) return new MusterError('auth_failed', 'no key in the key set matches the token');
  if (err instanceof errors.JWKSMultipleMatchingKeys) {
    return new MusterError('auth_failed', 'several keys in the key set match; the token must name one with kid');
  }
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

function infoOf(signed: Signed, role: TokenInfo['role'], sub?: string, nodeType?: string): TokenInfo {
  const info: TokenInfo = {
    jti: signed.jti,
    role,
    issued_at: signed.issuedAt.toISOString(),
    expires_at: signed.expiresAt.toISOString(),
  };
  if (sub !== undefined) info.sub = sub;
  if (nodeType !== undefined) info.node_type = nodeType;
  return info;
}

/** A claim that must be a string when present; anything else means the token was not ours. */
function optionalString(value: unknown, claim: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new MusterError('auth_failed', `token claim "${claim}" is not a string`);
  return value;
}
