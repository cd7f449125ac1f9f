// The SQLite store against the JobStore contract, plus what only a file-backed store promises:
// a restart (close, reopen) loses no job, attempt, result or log chunk.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../../protocol/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../../supervisor/store/job-row.js';
import { SqliteJobStore, listSql } from '../../../supervisor/store/sqlite-job-store.js';
import { SqliteTokenStore } from '../../../supervisor/store/sqlite-token-store.js';
import { METRICS, OWNER, jobStoreContract, newJob, outcome } from './job-store-contract.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-jobs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const tempFile = (): string => path.join(dir, `jobs-${++files}.db`);

const NODE_A = '11111111-1111-4111-8111-111111111111';
const NODE_B = '22222222-2222-4222-8222-222222222222';

// SQLite's WAL format: a 32-byte file header, then a 24-byte header before each page.
const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;
const PAGE_BYTES = 4096;

jobStoreContract('SqliteJobStore (file)', () => SqliteJobStore.open(tempFile()));
jobStoreContract('SqliteJobStore (:memory:)', () => SqliteJobStore.open(':memory:'));

describe('SqliteJobStore on disk', () => {
  it('keeps every job, attempt, result and log chunk across close and reopen', async () => {
    const file = tempFile();
    let store = SqliteJobStore.open(file);

    const retried = await store.submit(newJob({ priority: 'High' }), OWNER);
    await store.assign(retried.job_id, 1, NODE_A, OWNER);
    await store.markRunning(retried.job_id, 1, OWNER);
    await store.appendLog(retried.job_id, 1, 'stdout', 0, 'first try', OWNER);
    await store.requeue(retried.job_id, 1, 'node dead', OWNER);
    await store.assign(retried.job_id, 2, NODE_B, OWNER);
    await store.markRunning(retried.job_id, 2, OWNER);
    await store.appendLog(retried.job_id, 2, 'stdout', 0, 'second try', OWNER);
    await store.appendLog(retried.job_id, 2, 'stderr', 0, 'warn', OWNER);
    await store.storeResult(retried.job_id, 2, outcome(), METRICS, OWNER);

    const running = await store.submit(newJob(), OWNER);
    await store.assign(running.job_id, 1, NODE_A, OWNER);
    await store.markRunning(running.job_id, 1, OWNER);
    await store.requestCancel(running.job_id, OWNER);
    const low = await store.submit(newJob({ priority: 'Low' }), OWNER);
    const critical = await store.submit(newJob({ priority: 'Critical', deadline: '2030-01-01T00:00:00.000Z' }), OWNER);

    const ids = [retried.job_id, running.job_id, low.job_id, critical.job_id];
    const snapshot = async (s: SqliteJobStore) => ({
      jobs: await Promise.all(ids.map((id) => s.get(id))),
      logs: await s.logs(retried.job_id),
      attempts: await s.attempts(retried.job_id),
      queued: (await s.queued()).map((j) => j.job_id),
      active: (await s.active()).map((j) => j.job_id),
      counts: await s.counts(),
    });
    const before = await snapshot(store);
    await store.close();

    store = SqliteJobStore.open(file);
    try {
      const after = await snapshot(store);
      expect(after).toEqual(before);
      // Spot checks, so an empty snapshot on both sides cannot pass.
      expect(after.jobs[0]).toMatchObject({ state: 'Completed', attempt: 2, result: outcome(), metrics: METRICS });
      expect(after.jobs[1]).toMatchObject({ state: 'Running', node_id: NODE_A, cancel_requested: true });
      expect(after.logs.map((l) => l.data)).toEqual(['first try', 'second try', 'warn']);
      expect(after.attempts).toMatchObject([
        { attempt: 1, node_id: NODE_A, outcome: 'Withdrawn', reason: 'node dead' },
        { attempt: 2, node_id: NODE_B, outcome: 'Completed' },
      ]);
      expect(after.queued).toEqual([critical.job_id, low.job_id]);
      // The stored result and the log seq survive too: repeats are still recognised after a restart.
      expect(await store.storeResult(retried.job_id, 2, outcome(), METRICS, OWNER)).toBe('duplicate');
      expect(await store.appendLog(retried.job_id, 2, 'stdout', 0, 'again', OWNER)).toEqual({ status: 'duplicate' });
      expect(await store.appendLog(retried.job_id, 2, 'stdout', 2, 'x', OWNER)).toEqual({ status: 'gap', nextSeq: 1 });
      // New jobs still queue after the old ones (seq keeps growing).
      const later = await store.submit(newJob({ priority: 'Low' }), OWNER);
      expect(later.seq).toBeGreaterThan(critical.seq);
      expect((await store.queued()).map((j) => j.job_id)).toEqual([critical.job_id, low.job_id, later.job_id]);
    } finally {
      await store.close();
    }
  });

  it('lists jobs by state, node or priority through an index, newest first, reading no other job', async () => {
    const file = tempFile();
    await SqliteJobStore.open(file).close();
    const db = new Database(file, { readonly: true });
    try {
      for (const [filter, index] of [
        [{ state: 'DeadLettered' }, 'jobs_list_by_state'],
        [{ state: 'DeadLettered', before_seq: 10 }, 'jobs_list_by_state'],
        [{ node_id: NODE_A }, 'jobs_list_by_node'],
        [{ priority: 'High' }, 'jobs_list_by_priority'],
      ] as const) {
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${listSql(filter)}`).all({ ...filter, limit: 10 }) as { detail: string }[]).map((r) => r.detail);
        expect(plan.join(' | '), JSON.stringify(filter)).toContain(`USING INDEX ${index}`);
        expect(plan.join(' | ')).not.toContain('USE TEMP B-TREE FOR ORDER BY');
      }
    } finally {
      db.close();
    }
  });

  it('writes at most 23 WAL pages over the life of a job (submit, assign, run, result)', async () => {
    const file = tempFile();
    // No checkpoint while it counts: the WAL only grows, by one frame per page a commit writes.
    const store = SqliteJobStore.open(file, { busyTimeoutMs: 5_000, busyRetryMs: 10, busySliceMs: 2, checkpointIntervalMs: 3_600_000 });
    const walPages = (): number => (fs.statSync(`${file}-wal`).size - WAL_HEADER_BYTES) / (WAL_FRAME_HEADER_BYTES + PAGE_BYTES);
    const live = async (): Promise<void> => {
      const job = await store.submit(newJob(), OWNER);
      await store.assign(job.job_id, 1, NODE_A, OWNER);
      await store.markRunning(job.job_id, 1, OWNER);
      await store.storeResult(job.job_id, 1, outcome(), METRICS, OWNER);
    };
    try {
      // Past the first pages of each table and index, where a write may also start a page.
      for (let i = 0; i < 100; i++) await live();
      const before = walPages();
      for (let i = 0; i < 100; i++) await live();
      // 25.9 while jobs_by_state was kept beside jobs_list_by_state (schema 6), 22 without it.
      expect((walPages() - before) / 100).toBeLessThanOrEqual(23);
    } finally {
      await store.close();
    }
  });

  it('uses WAL and records its schema version', async () => {
    const file = tempFile();
    await SqliteJobStore.open(file).close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(SCHEMA_VERSION).toBe(7);
    } finally {
      db.close();
    }
  });

  it('migrates a version 1 file to the current version, keeping its jobs, and then keeps tokens', async () => {
    const file = tempFile();
    // A version 1 store: its schema only, and a job written the way version 1 wrote it.
    const v1 = new Database(file);
    v1.exec(MIGRATIONS[0] as string);
    v1.pragma('user_version = 1');
    const job = { job_id: '33333333-3333-4333-8333-333333333333' };
    v1.prepare(
      `INSERT INTO jobs (job_id, seq, state, attempt, priority, priority_rank, job, execution_context, selector,
                         max_attempts, created_at, updated_at)
       VALUES (?, 1, 'Queued', 1, 'Normal', 1, ?, ?, '{}', 3, '2030-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z')`,
    ).run(job.job_id, JSON.stringify(newJob().job), JSON.stringify(newJob().execution_context));
    v1.close();

    const store = SqliteJobStore.open(file);
    const tokens = SqliteTokenStore.open(file);
    try {
      expect(await store.get(job.job_id)).toMatchObject({ job_id: job.job_id, state: 'Queued' });
      // Submitted before jobs kept their trace context: none, rather than a null field.
      expect(await store.get(job.job_id)).not.toHaveProperty('traceparent');
      // Written before owner tokens existed: the first writer with one takes the job.
      expect(await store.assign(job.job_id, 1, NODE_A, OWNER)).toBe(true);
      await expect(store.markRunning(job.job_id, 1, OWNER - 1)).rejects.toBeInstanceOf(MusterError);
      await tokens.recordToken({
        jti: 'j-1',
        role: 'admin',
        issued_at: '2030-01-01T00:00:00.000Z',
        expires_at: '2030-01-01T01:00:00.000Z',
      });
      await tokens.revokeToken('j-1', 'test');
      expect(await tokens.listTokens()).toMatchObject([{ jti: 'j-1', revoke_reason: 'test' }]);
    } finally {
      await tokens.close();
      await store.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      db.close();
    }
  });

  it('creates a missing parent directory', async () => {
    const file = path.join(dir, 'nested', 'deeper', 'jobs.db');
    await SqliteJobStore.open(file).close();
    expect(fs.existsSync(file)).toBe(true);
  });

  it('refuses a file written by a newer schema', () => {
    const file = tempFile();
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    expect(() => SqliteJobStore.open(file)).toThrow(MusterError);
  });

  it('rejects with a MusterError once closed', async () => {
    const store = SqliteJobStore.open(':memory:');
    await store.close();
    await expect(store.get('x')).rejects.toBeInstanceOf(MusterError);
    await store.close();
  });
});
