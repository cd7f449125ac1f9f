// The embedded token store: minted tokens and revocations in the plane's SQLite file, on a
// connection of its own. Writes go through a group commit (group-commit.ts) like the job store's:
// a revocation is answered once it is on disk. The CLI offline opens it on the same file.
import type Database from 'better-sqlite3';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import { GroupCommit } from './group-commit.js';
import { SQLITE_DEFAULTS, openDatabase, walPathOf, type SqliteOptions } from './sqlite-database.js';
import { prepareTokenStatements, rowToRevocation, rowToToken, toTokenInsert } from './token-row.js';
import type { Revocation, TokenInfo, TokenRecord, TokenStore } from './token-store.js';

const now = (): string => new Date().toISOString();

export class SqliteTokenStore implements TokenStore {
  readonly #db: Database.Database;
  readonly #sql: ReturnType<typeof prepareTokenStatements>;
  readonly #writes: GroupCommit;

  private constructor(db: Database.Database, path: string, options: SqliteOptions) {
    this.#db = db;
    this.#sql = prepareTokenStatements(db);
    const walPath = walPathOf(path);
    this.#writes = new GroupCommit(db, walPath === undefined ? options : { ...options, walPath });
  }

  /** Opens (creating if missing) the store at `path`; `:memory:` gives a throwaway store. */
  static open(path: string, options: SqliteOptions = SQLITE_DEFAULTS): SqliteTokenStore {
    return new SqliteTokenStore(openDatabase(path, options), path, options);
  }

  recordToken(token: TokenInfo): Promise<void> {
    return this.#writes.write(() => {
      this.#sql.insertToken.run(toTokenInsert(token));
    });
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.#read(() => this.#sql.listTokens.all().map(rowToToken));
  }

  revokeToken(jti: string, reason: string): Promise<Revocation> {
    return this.#writes.write(() => {
      this.#sql.insertRevocation.run({ jti, reason, now: now() });
      const row = this.#sql.getRevocation.get(jti);
      if (row === undefined) throw new MusterError('internal', 'a revocation vanished inside its own transaction');
      return rowToRevocation(row);
    });
  }

  isRevoked(jti: string): Promise<boolean> {
    return this.#read(() => this.#sql.getRevocation.get(jti) !== undefined);
  }

  revokedSince(afterSeq: number): Promise<Revocation[]> {
    return this.#read(() => this.#sql.revokedSince.all(afterSeq).map(rowToRevocation));
  }

  pruneTokens(before: string): Promise<number> {
    return this.#writes.write(() => this.#sql.pruneTokens.run(before).changes + this.#sql.pruneRevocations.run(before).changes);
  }

  async close(): Promise<void> {
    await this.#writes.close();
    if (this.#db.open) this.#db.close();
  }

  // Every failure leaves as a rejected MusterError, never a synchronous throw across the async seam.
  #read<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(toMusterError(err));
    }
  }
}
