// Job secrets at rest, through the real `muster` processes: the data directory is private
// (0700, its files 0600), a secret's value is nowhere in the store's files, and only the
// `JobAssignment` to the node carries it in clear. A store written before sealing is migrated.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../../supervisor/store/job-row.js';
import { storePath } from '../../../supervisor/store/sqlite-database.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { Harness, runMuster } from '../../e2e/harness.js';
import { newJob } from './job-store-contract.js';

const SECRET = 'pa55-w0rd-that-must-not-rest-in-clear';
const h = new Harness();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-private-'));
afterAll(async () => {
  await h.close();
  fs.rmSync(root, { recursive: true, force: true });
}, 60_000);

const mode = (file: string): number => fs.statSync(file).mode & 0o777;

/** Every byte the store keeps on disk: the database, its WAL and shared memory. */
function storeBytes(dir: string): Buffer {
  const db = storePath(dir);
  return Buffer.concat([db, `${db}-wal`, `${db}-shm`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
}

describe('the data directory and job secrets at rest', () => {
  it('creates the data directory 0700 and its files 0600, and keeps secret values sealed', async () => {
    const dir = path.join(root, 'data');
    // First set-up through the CLI: the directory, the JWT secret and the store appear.
    const minted = await runMuster(['token', 'create', '--role', 'admin', '--data-dir', dir]);
    expect(minted.code, minted.stderr).toBe(0);
    expect(mode(dir)).toBe(0o700);
    expect(mode(path.join(dir, 'secret'))).toBe(0o600);
    expect(mode(storePath(dir))).toBe(0o600);

    const plane = await h.startPlane({ dataDir: dir });
    const node = await h.fakeNode(plane.tcpUrl);
    await node.register({ token: await h.mintToken(dir, 'node') });
    const answer = await plane.api.request<{ job_id: string }>('POST', '/v1/jobs', {
      job: { command: ['true'] },
      execution_context: { secrets: { DEPLOY_TOKEN: SECRET } },
    });
    expect(answer.status).toBe(201);
    const assignment = await node.next('JobAssignment', (d) => d.job_id === answer.body.job_id);
    // Opened for the node that runs the job, and only there.
    expect(assignment.data.execution_context.secrets).toEqual({ DEPLOY_TOKEN: SECRET });
    for (const file of [storePath(dir), `${storePath(dir)}-wal`, `${storePath(dir)}-shm`, path.join(dir, 'store.key')]) {
      expect(mode(file), file).toBe(0o600);
    }
    expect(storeBytes(dir).includes(SECRET)).toBe(false);
    await plane.stop();
    expect(storeBytes(dir).includes(SECRET)).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'store.key'), 'utf8').trim()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  }, 60_000);

  it('narrows a store file left readable by others to 0600', async () => {
    const dir = path.join(root, 'loose');
    fs.mkdirSync(dir, { mode: 0o755 });
    await SqliteJobStore.open(storePath(dir)).close();
    fs.chmodSync(storePath(dir), 0o644);
    await SqliteJobStore.open(storePath(dir)).close();
    expect(mode(storePath(dir))).toBe(0o600);
  });

  it('seals the secrets of a store written before sealing (schema 3), leaving no clear copy', async () => {
    const dir = path.join(root, 'v3');
    fs.mkdirSync(dir, { mode: 0o700 });
    const file = storePath(dir);
    const v3 = new Database(file);
    v3.pragma('journal_mode = WAL');
    for (const step of MIGRATIONS.slice(0, 3)) v3.exec(step as string);
    v3.pragma('user_version = 3');
    const jobId = '44444444-4444-4444-8444-444444444444';
    const spec = newJob({ execution_context: { ...newJob().execution_context, secrets: { DEPLOY_TOKEN: SECRET } } });
    v3.prepare(
      `INSERT INTO jobs (job_id, seq, state, attempt, priority, priority_rank, job, execution_context, selector,
                         max_attempts, owner, created_at, updated_at)
       VALUES (?, 1, 'Queued', 1, 'Normal', 1, ?, ?, '{}', 3, 1, '2030-01-01T00:00:00.000Z', '2030-01-01T00:00:00.000Z')`,
    ).run(jobId, JSON.stringify(spec.job), JSON.stringify(spec.execution_context));
    v3.close();
    expect(storeBytes(dir).includes(SECRET)).toBe(true);

    const store = SqliteJobStore.open(file);
    try {
      expect((await store.get(jobId))?.execution_context.secrets).toEqual({ DEPLOY_TOKEN: '***' });
      expect(await store.secrets(jobId)).toEqual({ DEPLOY_TOKEN: SECRET });
    } finally {
      await store.close();
    }
    expect(storeBytes(dir).includes(SECRET)).toBe(false);
  });
});
