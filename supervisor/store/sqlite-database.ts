// Opening the plane's SQLite file (`muster.db`): the pragmas every connection runs with, and the
// schema migrations. The job store and the token store each open their own connection to it.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import type { GroupCommitOptions } from './group-commit.js';
import { MIGRATIONS, SCHEMA_VERSION } from './job-row.js';

export interface SqliteOptions extends Omit<GroupCommitOptions, 'onHealth' | 'walPath'> {
  /** The longest the event loop may wait inside SQLite for another process's lock (a read, one try to begin a write). */
  busySliceMs: number;
  /**
   * How often a worker thread checkpoints the WAL (wal-checkpointer.ts), SQLite's own checkpoints
   * being off; 0: SQLite checkpoints by itself inside the commit that fills the WAL (tools, tests).
   */
  checkpointIntervalMs: number;
}

/** For tests and tools that open a store directly; the plane takes its settings from `supervisor/config.ts`. */
export const SQLITE_DEFAULTS: SqliteOptions = { busyTimeoutMs: 5_000, busyRetryMs: 10, busySliceMs: 2, checkpointIntervalMs: 0 };

/** The WAL file SQLite keeps beside `path`, fsynced before a write is answered; none in memory. */
export function walPathOf(path: string): string | undefined {
  return path === ':memory:' || path === '' ? undefined : `${path}-wal`;
}

/** The store file of a data directory: the plane and the CLI (offline) open the same one. */
export function storePath(dataDir: string): string {
  return join(dataDir, 'muster.db');
}

/** Opens (creating if missing) the file at `path`, migrated to this build's schema; `:memory:` gives a throwaway one. */
export function openDatabase(path: string, options: SqliteOptions): Database.Database {
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    // WAL + NORMAL, and the group commit (group-commit.ts) fsyncs the WAL on the thread pool
    // before it answers any write: what FULL would do, without the event loop waiting for
    // the disk, and once per turn rather than once per write. NORMAL alone never corrupts.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // Opening may wait for the lock (a migration); serving never waits long inside SQLite.
    migrate(db);
    if (options.checkpointIntervalMs > 0) db.pragma('wal_autocheckpoint = 0');
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
