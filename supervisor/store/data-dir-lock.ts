// One `muster serve` per data directory. Two planes on one store would each take every job as
// its own: a job placed by one on its node would be taken back by the other after the node
// grace, as a job whose node never came back to it, and run twice; the second would also
// migrate the store under the first. So a plane holds `plane.lock` in the data directory for its
// whole life: an SQLite file opened in exclusive locking mode, whose lock the kernel gives up
// when the process ends, however it ends (kill -9 too), so no stale lock is ever left to remove.
// The CLI's commands open `muster.db`, never this file, and work beside a running plane.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { MusterError } from '../../protocol/errors.js';
import { openFile, unusable } from './sqlite-database.js';

const LOCK_FILE = 'plane.lock';
/** Who holds the lock, for the refusal's message: a plain file, since the held lock lets no one read the other. */
const HOLDER_FILE = 'plane.pid';

export class DataDirLock {
  private constructor(private readonly db: Database.Database) {}

  /** Takes the data directory's lock, or refuses with who holds it and what to do. */
  static acquire(dataDir: string): DataDirLock {
    const path = join(dataDir, LOCK_FILE);
    const db = openFile(path);
    try {
      // Never wait: the other plane holds it for as long as it runs.
      db.pragma('busy_timeout = 0');
      db.pragma('locking_mode = EXCLUSIVE');
      // In exclusive mode the lock an exclusive transaction takes is kept until the connection closes.
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (err) {
      db.close();
      if (!isBusy(err)) throw unusable(err, path);
      throw new MusterError(
        'internal',
        `the data directory ${dataDir} is in use by another muster serve${holderOf(dataDir)}: stop it first, or give this plane a --data-dir of its own`,
      );
    }
    try {
      writeFileSync(join(dataDir, HOLDER_FILE), `${process.pid}\n`, { mode: 0o600 });
    } catch {
      // Only the refusal's message reads it: the lock is held either way.
    }
    return new DataDirLock(db);
  }

  /** Gives the lock up: the plane has stopped. */
  release(): void {
    if (this.db.open) this.db.close();
  }
}

function holderOf(dataDir: string): string {
  try {
    const pid = readFileSync(join(dataDir, HOLDER_FILE), 'utf8').trim();
    return /^\d+$/.test(pid) ? ` (pid ${pid})` : '';
  } catch {
    return '';
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}
