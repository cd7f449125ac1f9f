// Group commit for a SQLite connection: the writes issued in one event-loop turn are committed in
// one transaction, and each caller's promise settles only once that commit is on disk, so
// whatever a caller acknowledges next (a `JobResultAck`, a `201`) is durable.
// On disk means: the WAL file fsynced (fdatasync) after the commit, on libuv's thread pool, so
// the event loop never waits for the disk; one fsync covers every commit made before it.
// A read on the same connection may see a commit before its fsync ends; no caller is answered,
// so nothing is acknowledged, before it.
// A write that throws is rolled back alone and fails alone: the batch is first run without
// savepoints (a savepoint pair costs about as much as a small write), and only when one of its
// writes throws is the transaction rolled back and the batch run again, each write in its own
// savepoint. So a write's function may run twice (the first run undone): it must do nothing
// but statements on this connection, and return what they tell.
// When another process holds the write lock, the batch is retried on a timer rather than waiting
// inside SQLite's busy handler, which would block the event loop.
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { MusterError, toMusterError } from '../../protocol/errors.js';

export interface GroupCommitOptions {
  /** How long a write may wait for another process's write lock before it fails. */
  busyTimeoutMs: number;
  /** How often a batch that found the lock taken asks again. */
  busyRetryMs: number;
  /** Told of every commit that failed (disk full, I/O error) and of the first that succeeds after. */
  onHealth?: (failure: Error | undefined) => void;
  /** The connection's WAL file, fsynced before a commit is answered; none for `:memory:`. */
  walPath?: string;
}

interface Write {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  /** When the write was issued (ms), for the busy timeout. */
  since: number;
}

type Outcome = { ok: true; value: unknown } | { ok: false; err: unknown };

/** The statements that frame a batch, prepared once: `exec` would parse them on every write. */
interface Framing {
  begin: Database.Statement;
  commit: Database.Statement;
  rollback: Database.Statement;
  savepoint: Database.Statement;
  release: Database.Statement;
  rollbackTo: Database.Statement;
}

export class GroupCommit {
  readonly #db: Database.Database;
  readonly #options: GroupCommitOptions;
  readonly #sql: Framing;
  #pending: Write[] = [];
  #scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  #commits = 0;
  #syncs = 0;
  #failing = false;
  #closed = false;
  #wal: Promise<FileHandle> | undefined;
  /** The fsync running now, and the one that will start after it (shared by every commit made meanwhile). */
  #syncing: Promise<void> | undefined;
  #nextSync: Promise<void> | undefined;

  constructor(db: Database.Database, options: GroupCommitOptions) {
    this.#db = db;
    this.#options = options;
    this.#sql = {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      savepoint: db.prepare('SAVEPOINT w'),
      release: db.prepare('RELEASE w'),
      rollbackTo: db.prepare('ROLLBACK TO w'),
    };
  }

  /** Transactions committed so far: for tests that count how writes were grouped. */
  get commits(): number {
    return this.#commits;
  }

  /** WAL fsyncs completed so far: for tests that check a write is answered only after one. */
  get syncs(): number {
    return this.#syncs;
  }

  /** Queues `fn` for the next commit; resolves with its value once that commit is durable. */
  write<T>(fn: () => T): Promise<T> {
    if (this.#closed || !this.#db.open) return Promise.reject(new MusterError('internal', 'the store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ fn, resolve: resolve as (value: unknown) => void, reject, since: Date.now() });
      // setImmediate runs after the I/O callbacks of this turn: every write they issue joins the batch.
      this.#scheduled ??= setImmediate(() => this.#flush());
    });
  }

  /**
   * Commits what is queued now (a batch that finds the lock taken fails), waits until every
   * commit is on disk and its callers answered, and lets the WAL file go. The caller closes the
   * connection afterwards.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled as NodeJS.Immediate);
      clearTimeout(this.#scheduled as NodeJS.Timeout);
      this.#scheduled = undefined;
    }
    if (this.#pending.length > 0 && this.#db.open) this.#flush(true);
    await this.#nextSync?.catch(() => undefined);
    await this.#syncing?.catch(() => undefined);
    const wal = this.#wal;
    this.#wal = undefined;
    await wal?.then((handle) => handle.close()).catch(() => undefined);
  }

  #flush(final = false): void {
    this.#scheduled = undefined;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    try {
      this.#sql.begin.run();
    } catch (err) {
      this.#beginFailed(batch, err, final);
      return;
    }
    let outcomes = this.#runPlain(batch);
    if (outcomes === undefined) {
      // A write threw: its statements before the throw are undone with everything else, and
      // the batch runs again with a savepoint per write.
      this.#rollback();
      try {
        this.#sql.begin.run();
      } catch (err) {
        this.#beginFailed(batch, err, final);
        return;
      }
      outcomes = [];
      for (const write of batch) {
        const outcome = this.#inSavepoint(write);
        // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O):
        // the writes before this one are gone too, so each is tried again in its own transaction.
        if (!this.#db.inTransaction) return this.#oneByOne(batch);
        if (!outcome.ok && isStorageFailure(outcome.err)) this.#failed(outcome.err);
        outcomes.push(outcome);
      }
    }
    try {
      this.#sql.commit.run();
    } catch (err) {
      this.#rollback();
      this.#failed(err);
      if (batch.length > 1) return this.#oneByOne(batch);
      batch[0]?.reject(toMusterError(err));
      return;
    }
    this.#committed();
    this.#durable().then(
      () => batch.forEach((write, i) => settle(write, outcomes[i] as Outcome)),
      (err: unknown) => this.#syncFailed(batch, err),
    );
  }

  /** Resolves once everything committed so far is on disk. */
  #durable(): Promise<void> {
    if (this.#options.walPath === undefined) return Promise.resolve();
    if (this.#nextSync !== undefined) return this.#nextSync;
    // A sync under way may have started before this commit: wait for the one after it.
    if (this.#syncing !== undefined) {
      this.#nextSync = this.#syncing.catch(() => undefined).then(() => this.#startSync());
      return this.#nextSync;
    }
    return this.#startSync();
  }

  #startSync(): Promise<void> {
    // Starting now: commits made from here on need the next one.
    this.#nextSync = undefined;
    const sync: Promise<void> = this.#fsync().finally(() => {
      if (this.#syncing === sync) this.#syncing = undefined;
    });
    this.#syncing = sync;
    return sync;
  }

  async #fsync(): Promise<void> {
    this.#wal ??= openWal(this.#options.walPath as string);
    try {
      await (await this.#wal).datasync();
      this.#syncs += 1;
    } catch (err) {
      this.#wal = undefined;
      throw err;
    }
  }

  #syncFailed(batch: Write[], err: unknown): void {
    this.#failed(err);
    const error = new MusterError('internal', 'the store could not be synced to disk', { cause: err });
    for (const write of batch) write.reject(error);
  }

  /** Every write of the batch in the open transaction, without savepoints; undefined as soon as one throws. */
  #runPlain(batch: Write[]): Outcome[] | undefined {
    const outcomes: Outcome[] = new Array<Outcome>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      try {
        outcomes[i] = { ok: true, value: (batch[i] as Write).fn() };
      } catch {
        return undefined;
      }
    }
    return outcomes;
  }

  #inSavepoint(write: Write): Outcome {
    this.#sql.savepoint.run();
    try {
      const value = write.fn();
      this.#sql.release.run();
      return { ok: true, value };
    } catch (err) {
      if (this.#db.inTransaction) {
        this.#sql.rollbackTo.run();
        this.#sql.release.run();
      }
      return { ok: false, err };
    }
  }

  /** The fallback after a failed batch: each write alone, so that each succeeds or fails on its own. */
  #oneByOne(batch: Write[]): void {
    this.#rollback();
    for (const write of batch) {
      try {
        const value = this.#db.transaction(write.fn).immediate();
        this.#committed();
        this.#durable().then(
          () => write.resolve(value),
          (err: unknown) => this.#syncFailed([write], err),
        );
      } catch (err) {
        if (isStorageFailure(err)) this.#failed(err);
        write.reject(toMusterError(err));
      }
    }
  }

  #beginFailed(batch: Write[], err: unknown, final: boolean): void {
    const waited = Date.now() - Math.min(...batch.map((w) => w.since));
    if (isBusy(err) && !final && waited < this.#options.busyTimeoutMs) {
      // The lock is another process's: ask again later, with whatever was written meanwhile.
      this.#pending = [...batch, ...this.#pending];
      this.#scheduled = setTimeout(() => this.#flush(), this.#options.busyRetryMs);
      return;
    }
    const error = isBusy(err)
      ? new MusterError('internal', `the store is locked by another process (waited ${waited} ms)`, { cause: err })
      : toMusterError(err);
    if (!isBusy(err)) this.#failed(err);
    for (const write of batch) write.reject(error);
  }

  #rollback(): void {
    if (this.#db.inTransaction) this.#sql.rollback.run();
  }

  #committed(): void {
    this.#commits += 1;
    if (!this.#failing) return;
    this.#failing = false;
    this.#options.onHealth?.(undefined);
  }

  #failed(err: unknown): void {
    this.#failing = true;
    this.#options.onHealth?.(err instanceof Error ? err : new Error(String(err)));
  }
}

/**
 * The WAL file, held open for fsyncs. Its directory is fsynced once first, so that the file's
 * entry survives a power loss too (SQLite's FULL does the same for a new WAL). SQLite keeps
 * the file (same inode) for as long as a connection is open, so one handle serves them all.
 */
async function openWal(walPath: string): Promise<FileHandle> {
  const dir = await open(dirname(walPath), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return open(walPath, 'r');
}

function settle(write: Write, outcome: Outcome): void {
  if (outcome.ok) write.resolve(outcome.value);
  else write.reject(toMusterError(outcome.err));
}

function sqliteCode(err: unknown): string {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
    ? (err as { code: string }).code
    : '';
}

function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_');
}

/** Failures of the storage itself (full disk, I/O, damage), as opposed to one write's bad input. */
export function isStorageFailure(err: unknown): boolean {
  const code = sqliteCode(err);
  return ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CANTOPEN', 'SQLITE_READONLY', 'SQLITE_PERM'].some(
    (c) => code === c || code.startsWith(`${c}_`),
  );
}
