// Group commit in the SQLite store: the writes of one event-loop turn share one durable commit,
// a failing write fails alone, each caller is answered only once its write is committed, and a
// write lock held by another process (a real one: the CLI offline) never blocks the event loop.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../../protocol/errors.js';
import { SQLITE_DEFAULTS, openDatabase } from '../../../supervisor/store/sqlite-database.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { WalCheckpointer } from '../../../supervisor/store/wal-checkpointer.js';
import { OWNER, newJob } from './job-store-contract.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-group-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = (): string => path.join(dir, `jobs-${++files}.db`);

// A second process that takes the write lock, answers `ping` with `pong` while holding it, and
// commits and exits on `release`: what `muster token revoke` does offline, held open on purpose.
const HOLD_LOCK = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.exec('BEGIN IMMEDIATE');
db.exec("CREATE TABLE IF NOT EXISTS held (x)");
process.stdout.write('locked\\n');
let buffered = '';
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  let i;
  while ((i = buffered.indexOf('\\n')) >= 0) {
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    if (line === 'ping') process.stdout.write('pong\\n');
    if (line === 'release') { db.exec('COMMIT'); db.close(); process.exit(0); }
  }
});
`;

class LockHolder {
  readonly #child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #waiters: Array<() => void> = [];
  readonly #exited: Promise<void>;

  constructor(file: string) {
    this.#child = spawn(process.execPath, ['-e', HOLD_LOCK, file], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    void this.#exited.then(() => {
      for (const wake of this.#waiters.splice(0)) wake();
    });
    let partial = '';
    this.#child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      this.#lines.push(...parts);
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Resolves when the holder has printed `line` (in order). */
  async expect(line: string): Promise<void> {
    for (;;) {
      const at = this.#lines.indexOf(line);
      if (at >= 0) {
        this.#lines.splice(at, 1);
        return;
      }
      if (this.#child.exitCode !== null) throw new Error(`lock holder exited before printing ${line}`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  send(line: string): void {
    this.#child.stdin?.write(`${line}\n`);
  }

  /** Commits the holder's transaction and waits for it to exit: the lock is free. */
  async release(): Promise<void> {
    this.send('release');
    await this.#exited;
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

const holders: LockHolder[] = [];
afterEach(() => {
  for (const holder of holders.splice(0)) holder.kill();
});

async function holdLock(file: string): Promise<LockHolder> {
  const holder = new LockHolder(file);
  holders.push(holder);
  await holder.expect('locked');
  return holder;
}

describe('SqliteJobStore group commit', () => {
  it('answers a write only after the WAL holding its commit was fsynced', async () => {
    const store = SqliteJobStore.open(tempFile());
    try {
      for (let i = 0; i < 3; i++) {
        const before = store.syncs;
        await Promise.all([store.submit(newJob(), OWNER), store.submit(newJob(), OWNER)]);
        expect(store.syncs).toBeGreaterThan(before);
      }
      // Writes issued while a sync runs wait for the next one, which covers their commit.
      const first = store.submit(newJob(), OWNER);
      await new Promise<void>((resolve) => setImmediate(resolve));
      const syncsAtSecond = store.syncs;
      await Promise.all([first, store.submit(newJob(), OWNER)]);
      expect(store.syncs).toBeGreaterThan(syncsAtSecond);
    } finally {
      await store.close();
    }
  });

  it('keeps the connection in WAL mode, NORMAL sync (FULL comes from the fsync above)', () => {
    const db = openDatabase(tempFile(), SQLITE_DEFAULTS);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(1);
    } finally {
      db.close();
    }
  });

  it('commits the writes of one turn together; a failing write fails alone', async () => {
    const store = SqliteJobStore.open(tempFile());
    try {
      const before = store.commits;
      // JSON.stringify throws on a BigInt: the middle write fails inside its savepoint.
      const poisoned = newJob({ job: { ...newJob().job, environment: { BAD: 1n as unknown as string } } });
      const [a, b, c] = await Promise.allSettled([store.submit(newJob(), OWNER), store.submit(poisoned, OWNER), store.submit(newJob(), OWNER)]);
      expect(store.commits - before).toBe(1);
      expect(a.status).toBe('fulfilled');
      expect(c.status).toBe('fulfilled');
      expect(b.status).toBe('rejected');
      expect((b as PromiseRejectedResult).reason).toBeInstanceOf(MusterError);
      const stored = (await store.queued()).map((j) => j.job_id);
      const ids = [a, c].map((r) => (r as PromiseFulfilledResult<{ job_id: string }>).value.job_id);
      expect(stored).toEqual(ids);
      // Writes of a later turn make a new commit.
      await store.submit(newJob(), OWNER);
      expect(store.commits - before).toBe(2);
    } finally {
      await store.close();
    }
  });

  it('undoes all of a write that fails half-way, and keeps the others of its turn in one commit', async () => {
    const store = SqliteJobStore.open(tempFile());
    try {
      const before = store.commits;
      const poisoned = newJob({ job: { ...newJob().job, environment: { BAD: 1n as unknown as string } } });
      // The batch's first job is inserted before its second throws: none of it may stay.
      const [a, batch, c] = await Promise.allSettled([
        store.submit(newJob(), OWNER),
        store.submitMany([newJob(), poisoned], OWNER),
        store.submit(newJob(), OWNER),
      ]);
      expect(batch.status).toBe('rejected');
      expect(store.commits - before).toBe(1);
      const ids = [a, c].map((r) => (r as PromiseFulfilledResult<{ job_id: string; seq: number }>).value);
      expect((await store.queued()).map((j) => j.job_id)).toEqual(ids.map((r) => r.job_id));
      // The records answered are the rows stored.
      for (const r of ids) expect(await store.get(r.job_id)).toEqual(r);
    } finally {
      await store.close();
    }
  });

  it('answers a write only once another connection can read it', async () => {
    const file = tempFile();
    const store = SqliteJobStore.open(file);
    const other = new Database(file, { readonly: true });
    try {
      const count = other.prepare<[], number>('SELECT COUNT(*) FROM jobs').pluck();
      const pending = store.submit(newJob(), OWNER);
      // Issued, not yet committed: nothing is visible, and nothing is answered.
      expect(count.get()).toBe(0);
      const record = await pending;
      expect(count.get()).toBe(1);
      expect(other.prepare('SELECT state FROM jobs WHERE job_id = ?').pluck().get(record.job_id)).toBe('Queued');
    } finally {
      other.close();
      await store.close();
    }
  });

  it('waits for another process holding the write lock without blocking the event loop', async () => {
    const file = tempFile();
    const store = SqliteJobStore.open(file);
    try {
      const queued = await store.submit(newJob(), OWNER);
      const holder = await holdLock(file);
      let settled = false;
      const pending = store.submit(newJob(), OWNER);
      void pending.then(
        () => (settled = true),
        () => (settled = true),
      );
      // A round trip to the other process needs this event loop to run while the write waits.
      holder.send('ping');
      await holder.expect('pong');
      expect(settled).toBe(false);
      // Reads still answer from what is committed.
      expect((await store.get(queued.job_id))?.state).toBe('Queued');
      holder.send('release');
      const record = await pending;
      expect((await store.get(record.job_id))?.state).toBe('Queued');
    } finally {
      await store.close();
    }
  });

  it('fails a write whose lock stays taken past the busy timeout, and recovers after', async () => {
    const file = tempFile();
    const store = SqliteJobStore.open(file, { ...SQLITE_DEFAULTS, busyTimeoutMs: 50, busyRetryMs: 5 });
    try {
      const holder = await holdLock(file);
      await expect(store.submit(newJob(), OWNER)).rejects.toThrow(/locked by another process/);
      await holder.release();
      expect((await store.submit(newJob(), OWNER)).state).toBe('Queued');
    } finally {
      await store.close();
    }
  });
});

describe('WAL checkpoints off the event loop', () => {
  it('turns SQLite own checkpoints off when a checkpointer runs', () => {
    const own = openDatabase(tempFile(), SQLITE_DEFAULTS);
    const plane = openDatabase(tempFile(), { ...SQLITE_DEFAULTS, checkpointIntervalMs: 1_000 });
    try {
      expect(own.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
      expect(plane.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
    } finally {
      own.close();
      plane.close();
    }
  });

  it('copies every committed frame into the database from its worker thread', async () => {
    const file = tempFile();
    const store = SqliteJobStore.open(file, { ...SQLITE_DEFAULTS, checkpointIntervalMs: 1_000_000 });
    const checkpointer = new WalCheckpointer(file, 5, { warn: () => {} });
    try {
      await Promise.all(Array.from({ length: 20 }, () => store.submit(newJob(), OWNER)));
      // The first report may come from a checkpoint that started before the last commit.
      let report = await checkpointer.next();
      while (report.checkpointed < report.log) report = await checkpointer.next();
      expect(report.log).toBeGreaterThan(0);
      expect(report.checkpointed).toBe(report.log);
      expect((await store.queued()).length).toBe(20);
    } finally {
      await checkpointer.close();
      await store.close();
    }
  });
});
