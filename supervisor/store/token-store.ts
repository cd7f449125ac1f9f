// The TokenStore seam: minted tokens (by `jti`, never the token itself) and revocations.
// Its own seam, apart from the jobs: the embedded plane keeps both in one SQLite file
// (sqlite-token-store.ts), a cluster may keep them elsewhere; every implementation passes
// test/supervisor/store/token-store-contract.ts.

/** What a minted token is for: `node` a registration token, `session` a node session, or an admin API role. */
export type TokenRole = 'node' | 'session' | 'viewer' | 'operator' | 'admin';

/** A minted token as recorded for `muster token list`: never the token itself. */
export interface TokenInfo {
  jti: string;
  role: TokenRole;
  /** Registration: the only hostname allowed; session: the node id; API: who it is for. */
  sub?: string;
  /** Registration only: the node type it is bound to. */
  node_type?: string;
  /** RFC 3339. */
  issued_at: string;
  /** RFC 3339. */
  expires_at: string;
}

/** A recorded token with its revocation, if any. */
export interface TokenRecord extends TokenInfo {
  revoked_at?: string;
  revoke_reason?: string;
}

/** One revoked `jti`; `seq` orders revocations store-wide, for `revokedSince`. */
export interface Revocation {
  jti: string;
  reason: string;
  /** RFC 3339. */
  revoked_at: string;
  /** The token's expiry when known (it was recorded): after it the revocation may be forgotten. */
  expires_at?: string;
  seq: number;
}

/** All methods are atomic; a write's promise resolves once it is durable. */
export interface TokenStore {
  /** Records a minted token; recording the same `jti` again changes nothing. */
  recordToken(token: TokenInfo): Promise<void>;
  /** Every recorded token, oldest first, with its revocation if any. */
  listTokens(): Promise<TokenRecord[]>;
  /**
   * Revokes `jti`, recorded or not (a token minted elsewhere is revoked by its id too).
   * Idempotent: revoking again returns the first revocation unchanged.
   */
  revokeToken(jti: string, reason: string): Promise<Revocation>;
  isRevoked(jti: string): Promise<boolean>;
  /** Revocations with `seq` above `afterSeq` (0: all), in `seq` order: how every reader learns of new ones. */
  revokedSince(afterSeq: number): Promise<Revocation[]>;
  /**
   * Forgets tokens, and revocations of tokens, that expired before `before` (RFC 3339):
   * an expired token is refused anyway. Revocations of unrecorded tokens are kept. Returns how many rows went.
   */
  pruneTokens(before: string): Promise<number>;
  /**
   * Optional, for stores that hear of changes (a cluster's KV watch): the highest position in
   * the store's revocations that it has heard of, from memory. A poller reads `revokedSince`
   * only when this moved past what it had heard before its last read, so following costs nothing
   * while nothing changes. A hint: it may lag, never run ahead of what a read returns. Absent:
   * the poller reads every time.
   */
  revocationsHeard?(): number;
  close(): Promise<void>;
}
