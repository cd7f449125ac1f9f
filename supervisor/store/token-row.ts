// The SQLite job store's token tables (schema version 2): minted tokens and revocations,
// their statements and their row ↔ record mapping. Kept apart so the job tables read on their own.
import type Database from 'better-sqlite3';
import type { Revocation, TokenInfo, TokenRecord, TokenRole } from './token-store.js';

// AUTOINCREMENT: a pruned revocation's `seq` is never handed out again, so a reader's cursor
// (`revokedSince`) can never skip a newer revocation that reused it.
export const TOKEN_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS tokens (
  jti        TEXT PRIMARY KEY,
  role       TEXT NOT NULL,
  sub        TEXT,
  node_type  TEXT,
  issued_at  TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens (expires_at);
CREATE TABLE IF NOT EXISTS revocations (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  jti        TEXT NOT NULL UNIQUE,
  reason     TEXT NOT NULL,
  revoked_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX IF NOT EXISTS revocations_by_expiry ON revocations (expires_at);
`;

interface TokenRow {
  jti: string;
  role: TokenRole;
  sub: string | null;
  node_type: string | null;
  issued_at: string;
  expires_at: string;
  revoked_at: string | null;
  revoke_reason: string | null;
}

interface RevocationRow {
  seq: number;
  jti: string;
  reason: string;
  revoked_at: string;
  expires_at: string | null;
}

interface TokenInsert {
  jti: string;
  role: TokenRole;
  sub: string | null;
  node_type: string | null;
  issued_at: string;
  expires_at: string;
}

/** The prepared statements of the token tables (named, so that declarations can be emitted). */
export interface TokenStatements {
  insertToken: Database.Statement<[TokenInsert]>;
  listTokens: Database.Statement<[], TokenRow>;
  insertRevocation: Database.Statement<[{ jti: string; reason: string; now: string }]>;
  getRevocation: Database.Statement<[string], RevocationRow>;
  revokedSince: Database.Statement<[number], RevocationRow>;
  pruneTokens: Database.Statement<[string]>;
  pruneRevocations: Database.Statement<[string]>;
}

export function prepareTokenStatements(db: Database.Database): TokenStatements {
  return {
    insertToken: db.prepare<[TokenInsert]>(`
      INSERT OR IGNORE INTO tokens (jti, role, sub, node_type, issued_at, expires_at)
      VALUES (@jti, @role, @sub, @node_type, @issued_at, @expires_at)`),
    listTokens: db.prepare<[], TokenRow>(`
      SELECT t.*, r.revoked_at AS revoked_at, r.reason AS revoke_reason
      FROM tokens t LEFT JOIN revocations r ON r.jti = t.jti
      ORDER BY t.issued_at, t.rowid`),
    // The token's expiry, when it was recorded, goes with the revocation so that both can be pruned.
    insertRevocation: db.prepare<[{ jti: string; reason: string; now: string }]>(`
      INSERT OR IGNORE INTO revocations (jti, reason, revoked_at, expires_at)
      VALUES (@jti, @reason, @now, (SELECT expires_at FROM tokens WHERE jti = @jti))`),
    getRevocation: db.prepare<[string], RevocationRow>(`SELECT * FROM revocations WHERE jti = ?`),
    revokedSince: db.prepare<[number], RevocationRow>(`SELECT * FROM revocations WHERE seq > ? ORDER BY seq`),
    pruneTokens: db.prepare<[string]>(`DELETE FROM tokens WHERE expires_at < ?`),
    pruneRevocations: db.prepare<[string]>(`DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at < ?`),
  };
}

export function toTokenInsert(token: TokenInfo): TokenInsert {
  return {
    jti: token.jti,
    role: token.role,
    sub: token.sub ?? null,
    node_type: token.node_type ?? null,
    issued_at: token.issued_at,
    expires_at: token.expires_at,
  };
}

export function rowToToken(row: TokenRow): TokenRecord {
  const record: TokenRecord = { jti: row.jti, role: row.role, issued_at: row.issued_at, expires_at: row.expires_at };
  if (row.sub !== null) record.sub = row.sub;
  if (row.node_type !== null) record.node_type = row.node_type;
  if (row.revoked_at !== null) record.revoked_at = row.revoked_at;
  if (row.revoke_reason !== null) record.revoke_reason = row.revoke_reason;
  return record;
}

export function rowToRevocation(row: RevocationRow): Revocation {
  const revocation: Revocation = { jti: row.jti, reason: row.reason, revoked_at: row.revoked_at, seq: row.seq };
  if (row.expires_at !== null) revocation.expires_at = row.expires_at;
  return revocation;
}
