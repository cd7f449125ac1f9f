// Opening the plane's SQLite file (`muster.db`): the pragmas every connection runs with, the
// schema migrations, and the check that the file is usable at all. The job store and the token
// store each open their own connection to it. A file that is damaged, not a database, or on a
// read-only disk is refused with what is wrong and where ("file is not a database: <path>"),
// marked so that `muster serve` exits with its own status (store-unusable.ts).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import type { GroupCommitOptions } from './group-commit.js';
import { MIGRATIONS, SCHEMA_VERSION } from './job-row.js';
import { SecretBox } from './secret-box.js';
import { StoreUnusable } from './store-unusable.js';

export interface SqliteOptions extends Omit<GroupCommitOptions, 'onHealth' | 'walPath'> {
  /** The longest the event loop may wait inside SQLite for another process's lock (a read, one try to begin a write). */
  busySliceMs: number;
  /**
   * How often a worker thread checkpoints the WAL (wal-checkpointer.ts), SQLite's own checkpoints
   * being off; 0: SQLite checkpoints by itself inside the commit that fills the WAL (tools, tests).
   */
  checkpointIntervalMs: number;
  /** Runs `PRAGMA quick_check` at open and refuses a damaged file (the plane's job store; O(file size)). */
  integrityCheck?: boolean;
}


// SQLite's answers for a file that no retry will fix.
const UNUSABLE = ['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CANTOPEN', 'SQLITE_READONLY', 'SQLITE_PERM', 'SQLITE_IOERR'];

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
  if (path !== ':memory:' && path !== '') keepPrivate(path);
  const db = openFile(path);
  try {
    // WAL + NORMAL, and the group commit (group-commit.ts) fsyncs the WAL on the thread pool
    // before it answers any write: what FULL would do, without the event loop waiting for
    // the disk, and once per turn rather than once per write. NORMAL alone never corrupts.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    if (options.integrityCheck === true) quickCheck(db, path);
    // Opening may wait for the lock (a migration); serving never waits long inside SQLite.
    migrate(db, path);
    if (options.checkpointIntervalMs > 0) db.pragma('wal_autocheckpoint = 0');
    db.pragma(`busy_timeout = ${Math.round(options.busySliceMs)}`);
    return db;
  } catch (err) {
    db.close();
    throw unusable(err, path);
  }
}

/** The file at `path` opened, or why not, marked when no retry can fix it ("unable to open database file: <path>"). */
export function openFile(path: string): Database.Database {
  try {
    return new Database(path);
  } catch (err) {
    throw unusable(err, path);
  }
}

/**
 * The data directory is created 0700 and the store file 0600 before SQLite opens it: SQLite
 * gives its WAL and shared-memory files the mode of the database file. Files an older version
 * left readable by others are narrowed to 0600.
 */
function keepPrivate(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      chmodSync(file, 0o600);
    } catch {
      // Missing (no WAL yet), or not ours to change: SQLite reports what matters when it opens.
    }
  }
}

/** Refuses a file with damaged pages that still opens: it must not go on taking jobs as if healthy. */
function quickCheck(db: Database.Database, path: string): void {
  const rows = db.pragma('quick_check(5)', { simple: false }) as Array<{ quick_check: string }>;
  if (rows.length === 1 && rows[0]?.quick_check === 'ok') return;
  // Its lines, without the "*** in database main ***" heading: one line for the log and stderr.
  const lines = rows.flatMap((r) => r.quick_check.split('\n')).filter((l) => l.trim() !== '' && !l.startsWith('***'));
  const first = lines.slice(0, 2).join('; ') || 'failed';
  throw new MusterError('internal', `database disk image is malformed: ${path} (quick_check: ${first})`, {
    cause: new StoreUnusable(first),
  });
}

/** "file is not a database: /var/lib/muster/muster.db", marked unusable when no retry can fix it. */
export function unusable(err: unknown, path: string): MusterError {
  if (err instanceof MusterError) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !UNUSABLE.some((c) => code === c || code.startsWith(`${c}_`))) return toMusterError(err);
  // A read-only disk or directory shows as "unable to open" (the WAL cannot be made) or "readonly".
  const hint = code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_READONLY') ? ' (its directory must be writable)' : '';
  const message = `${(err as Error).message}: ${path}${hint}`;
  return new MusterError('internal', message, { cause: new StoreUnusable(message, { cause: err }) });
}

function migrate(db: Database.Database, path: string): void {
  if (userVersion(db) === SCHEMA_VERSION) return;
  // One IMMEDIATE transaction for every step: the file is never left half-way between two
  // versions, and two connections opening it at once migrate it once.
  db.transaction(() => {
    const version = userVersion(db);
    if (version > SCHEMA_VERSION) {
      throw new MusterError('internal', `job store schema ${version} is newer than this build (${SCHEMA_VERSION})`);
    }
    let box: SecretBox | undefined;
    const keyOf = (): SecretBox => (box ??= SecretBox.forStore(path));
    for (const step of MIGRATIONS.slice(version)) {
      if (typeof step === 'string') db.exec(step);
      else step(db, keyOf);
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
