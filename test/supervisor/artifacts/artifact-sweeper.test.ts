// The plane's sweep of abandoned uploads (artifact-sweeper.ts): which uploads its rule lets go
// (idle for `artifactAbandonAfterMs` and of an attempt that can no longer resume, by the job
// store; one of the job's current attempt stays however idle), how often its timer runs (fake
// timers), and that a real embedded plane sweeps what an earlier process left in its data
// directory (awaited on the plane's log line, within a deadline).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { ArtifactSweeper } from '../../../supervisor/artifacts/artifact-sweeper.js';
import { FileArtifactStore } from '../../../supervisor/artifacts/file-artifact-store.js';
import type { SweepRule } from '../../../supervisor/artifacts/artifact-store.js';
import type { JobRecord, JobState } from '../../../supervisor/store/job-store.js';
import { startSecurityPlane } from '../security-plane.js';
import { MAX_ARTIFACT_BYTES, artifactOf, upload } from './artifact-store-contract.js';

const HOUR = 3_600_000;
const silent = createLogger({ level: 'silent' });
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
afterEach(() => vi.useRealTimers());

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'muster-sweep-'));
  dirs.push(dir);
  return dir;
}

/** A job store that knows `jobs` (id → state and current attempt). */
function jobsOf(jobs: Record<string, { state: JobState; attempt: number }>): { get(id: string): Promise<JobRecord | undefined> } {
  return { get: (id) => Promise.resolve(jobs[id] === undefined ? undefined : ({ job_id: id, ...jobs[id] } as JobRecord)) };
}

describe('ArtifactSweeper', () => {
  it('removes idle uploads of attempts that ended, went on or are unknown, and keeps the current attempt and recent ones', async () => {
    const store = new FileArtifactStore({ dataDir: dataDir(), maxArtifactBytes: MAX_ARTIFACT_BYTES });
    const bytes = randomBytes(50_000);
    const current = artifactOf(bytes);
    const later = artifactOf(bytes);
    const ended = artifactOf(bytes);
    const unknown = artifactOf(bytes);
    for (const start of [current, later, ended, unknown]) {
      await store.start(start);
      await upload(store, start, bytes.subarray(0, 20_000));
    }
    const jobs = jobsOf({
      [current.job_id]: { state: 'Running', attempt: 1 },
      [later.job_id]: { state: 'Running', attempt: 2 },
      [ended.job_id]: { state: 'Cancelled', attempt: 1 },
    });
    let now = Date.now();
    const sweeper = new ArtifactSweeper({ store, jobs, abandonAfterMs: HOUR, logger: silent, now: () => now });
    // Written a moment ago: not idle for an hour, whatever its job.
    expect(await sweeper.sweep()).toBe(0);
    now += HOUR + 60_000;
    expect(await sweeper.sweep()).toBe(3);
    expect(await store.start(current)).toEqual({ received: 20_000 });
    for (const start of [later, ended, unknown]) expect(await store.start(start)).toEqual({ received: 0 });
    await sweeper.close();
    await store.close();
  });

  it('sweeps every quarter of the threshold, at most 15 minutes apart, and never with 0', async () => {
    vi.useFakeTimers({ now: 1_000_000_000_000 });
    const rules: SweepRule[] = [];
    const store = { sweep: (rule: SweepRule) => (rules.push(rule), Promise.resolve(0)) };
    const sweeper = new ArtifactSweeper({ store, jobs: jobsOf({}), abandonAfterMs: 20 * 60_000, logger: silent });
    await vi.advanceTimersByTimeAsync(5 * 60_000 - 1);
    expect(rules).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(rules.map((r) => r.idleBefore)).toEqual([1_000_000_000_000 + 5 * 60_000 - 20 * 60_000]);
    await sweeper.close();
    const hourly = new ArtifactSweeper({ store, jobs: jobsOf({}), abandonAfterMs: HOUR, logger: silent });
    await vi.advanceTimersByTimeAsync(15 * 60_000);
    expect(rules).toHaveLength(2);
    await hourly.close();
    const never = new ArtifactSweeper({ store, jobs: jobsOf({}), abandonAfterMs: 0, logger: silent });
    await vi.advanceTimersByTimeAsync(24 * HOUR);
    expect(rules).toHaveLength(2);
    await never.close();
  });
});

describe('the embedded plane', () => {
  it('sweeps an upload an earlier process left in its data directory', async () => {
    const log = new PassThrough();
    const lines: string[] = [];
    const swept = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no sweep within 10 s; the plane logged ${lines.length} lines`)), 10_000);
      log.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('utf8').split('\n').filter((l) => l !== '')) {
          lines.push(line);
          const parsed = JSON.parse(line) as Record<string, unknown>;
          if (parsed.msg !== 'abandoned artifact uploads removed') continue;
          clearTimeout(timer);
          resolve(parsed);
        }
      });
    });
    // A second a sweep (a quarter of 4 s).
    const p = await startSecurityPlane({ artifactAbandonAfterMs: 4_000 }, { logTo: log });
    try {
      const uploads = join(p.dataDir, 'artifacts', 'uploads');
      mkdirSync(uploads, { recursive: true });
      const bytes = randomBytes(10_000);
      const start = artifactOf(bytes);
      const part = join(uploads, `${start.artifact_id}.part`);
      writeFileSync(join(uploads, `${start.artifact_id}.json`), JSON.stringify(start));
      writeFileSync(part, bytes.subarray(0, 4_000));
      // Last written an hour ago, by a process that is gone; its job is unknown to this one.
      const anHourAgo = new Date(Date.now() - HOUR);
      utimesSync(part, anHourAgo, anHourAgo);
      expect(await swept).toMatchObject({ removed: 1 });
      expect(existsSync(part)).toBe(false);
      expect(existsSync(join(uploads, `${start.artifact_id}.json`))).toBe(false);
    } finally {
      await p.stop();
    }
  });
});
