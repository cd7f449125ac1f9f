// A real ENOSPC: the data directory on a 2 MB tmpfs, filled up. A write that cannot be stored
// fails (nothing is acknowledged), the store and `/readyz` of a real plane say what is wrong
// while it lasts, and once there is room again the next write succeeds and clears it.
// Needs `mount -t tmpfs` (root, or a user namespace that allows it): skipped with the reason otherwise.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../../protocol/errors.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { Harness } from '../../e2e/harness.js';
import { OWNER, newJob } from './job-store-contract.js';

const mounts: string[] = [];
afterAll(() => {
  for (const dir of mounts) {
    try {
      execFileSync('umount', [dir]);
    } catch {
      // Already gone.
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A fresh 2 MB tmpfs, or the reason there can be none here. */
function smallDisk(): string | Error {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'pipe' });
    mounts.push(dir);
    return dir;
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    return err as Error;
  }
}

/** Fills the file system of `dir` with one file until ENOSPC; returns its path. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const block = Buffer.alloc(16 * 1024, 1);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

/** A job big enough that its commit must grow the WAL: it cannot fit in frames already there. */
const bigJob = () => newJob({ job: { ...newJob().job, environment: { BIG: 'x'.repeat(100_000), BIGGER: 'y'.repeat(100_000) } } });

const probe = smallDisk();
const skip = probe instanceof Error ? `cannot mount a tmpfs here: ${probe.message.split('\n')[0]}` : '';
if (skip !== '') console.warn(`disk-full tests skipped: ${skip}`);

describe.skipIf(skip !== '')('a full disk (real ENOSPC on a 2 MB tmpfs)', () => {
  it('fails the write, reports the failure with the file, and clears it once a write succeeds', async () => {
    const dir = probe as string;
    const store = SqliteJobStore.open(path.join(dir, 'muster.db'));
    try {
      const before = await store.submit(newJob(), OWNER);
      expect(store.failure()).toBeUndefined();
      const filler = fill(dir);
      await expect(store.submit(bigJob(), OWNER)).rejects.toBeInstanceOf(MusterError);
      expect(store.failure()).toMatch(/full.*muster\.db$/);
      // Nothing half-written: the store holds what it held.
      expect((await store.queued()).map((j) => j.job_id)).toEqual([before.job_id]);
      fs.rmSync(filler);
      await store.submit(bigJob(), OWNER);
      expect(store.failure()).toBeUndefined();
      expect(await store.queued()).toHaveLength(2);
    } finally {
      await store.close();
    }
  });

  it('makes a real plane answer /readyz 503 with the reason while it lasts', async () => {
    const dir = smallDisk() as string;
    const h = new Harness();
    try {
      const plane = await h.startPlane({ dataDir: dir });
      const readyz = async () => {
        const res = await fetch(`${plane.httpUrl}/readyz`);
        return { status: res.status, body: (await res.json()) as { status: string; reason?: string } };
      };
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
      const filler = fill(dir);
      const big = { job: { command: ['true'], environment: { BIG: 'x'.repeat(100_000), BIGGER: 'y'.repeat(100_000) } } };
      const refused = await plane.api.request('POST', '/v1/jobs', big);
      expect(refused.status).toBe(500);
      const down = await readyz();
      expect(down.status).toBe(503);
      expect(down.body.reason).toMatch(/^store: database or disk is full \(SQLITE_FULL\): .*muster\.db$/);
      fs.rmSync(filler);
      expect((await plane.api.request('POST', '/v1/jobs', big)).status).toBe(201);
      expect(await readyz()).toEqual({ status: 200, body: { status: 'ready' } });
    } finally {
      await h.close();
    }
  }, 60_000);
});
