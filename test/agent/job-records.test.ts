import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRecords, processStartTime } from '../../agent/job-records.js';
import { isRunning, until } from './agent-process.js';

const logger = pino({ level: 'silent' });
let workDir: string;
let pids: number[];

beforeEach(() => {
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-records-'));
  pids = [];
});
afterEach(() => {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  rmSync(workDir, { recursive: true, force: true });
});

/** A process group of its own, as a job's is. */
function group(): number {
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  child.unref();
  pids.push(child.pid!);
  return child.pid!;
}

describe('JobRecords', () => {
  it('kills, on sweep, the recorded groups that still run, and forgets every record', async () => {
    const pgid = group();
    new JobRecords(workDir).add({ job_id: randomUUID(), attempt: 1, pgid, start_time: processStartTime(pgid) });
    const found = new JobRecords(workDir).sweep(logger);
    expect(found.map((r) => r.pgid)).toEqual([pgid]);
    await until('the recorded group is killed', () => !isRunning(pgid));
    expect(readdirSync(join(workDir, '.jobs'))).toEqual([]);
  });

  it('leaves alone a process that has the recorded pid but started at another time (a reused pid)', () => {
    const pgid = group();
    new JobRecords(workDir).add({ job_id: randomUUID(), attempt: 1, pgid, start_time: '1' });
    expect(new JobRecords(workDir).sweep(logger)).toEqual([]);
    expect(isRunning(pgid)).toBe(true);
  });
});
