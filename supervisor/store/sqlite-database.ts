// Opening the plane's SQLite file (`muster.db`): the pragmas every connection runs with, and the
// schema migrations. The job store and the token store each open their own connection to it.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import type { GroupCommitOptions } from './group-commit.js';
import { MIGRATIONS, SCHEMA_VERSION } from './job-row.js';

export interface SqliteOptions extends Omit<GroupCommitOptions, 'onHealth'> {
  /** The longest the event loop may wait inside SQLite for another process's lock (a read, one try to begin a write). */
  busySliceMs: number;
}

/** The defaults of `supervisor/config.ts`, for tests and tools that open a store directly. */
export const SQLITE_DEFAULTS: SqliteOptions = { busyTimeoutMs: 5_000, busyRetryMs: 10, busySliceMs: 2 };

/** The store file of a data directory: the plane and the CLI (offline) open the same one. */
export function storePath(dataDir: string): string {
  return join(dataDir, 'muster.db');
}

/** Opens (creating if missing) the file at `path`, migrated to this build's schema; `:memory:` gives a throwaway one. */
export function openDatabase(path: string, options: SqliteOptions): Database.Database {
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    // WAL + FULL: a commit is on disk (the WAL fsynced) before it returns; group commit
    // (group-commit.ts) pays that fsync once per event-loop turn, not once per write.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    // Opening may wait for the lock (a migration); serving never waits long inside SQLite.
    migrate(db);
    db.pragma(`busy_timeout = ${Math.round(options.busySliceMs)}`);
    return db;
  } catch (err) {
    db.close();
    throw toMusterError(err);
  }
}

function migrate(db: Database.Database): void {
  if (userVersion(db) === SCHEMA_VERSION) return;
  // One IMMEDIATE transaction for every step: the file is never left half-way between two
  // versions, and two connections opening it at once migrate it once.
  db.transaction(() => {
    const version = userVersion(db);
    if (version > SCHEMA_VERSION) {
      throw new MusterError('internal', `job store schema ${version} is newer than this build (${SCHEMA_VERSION})`);
    }
    for (const sql of MIGRATIONS.slice(version)) db.exec(sql);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
