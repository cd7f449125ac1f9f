// Daemons do not escape (issue 8, item 3): a job that starts a `setsid` daemon, which leaves
// the job's process group, leaves nothing running once the job ends or is cancelled, where
// the agent may make cgroups. Runs the real JobRunner with the agent's real guards.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectCgroupSupport } from '../../agent/job-cgroup.js';
import { JobGuards } from '../../agent/job-guard.js';
import { JobRunner, type JobAssignment, type LogChunkData } from '../../agent/job-runner.js';
import { isRunning, until } from './agent-process.js';

const logger = pino({ level: 'silent' });
const support = detectCgroupSupport();
const skipped = support.usable ? '' : ` (skipped: ${support.reason})`;
const cgroupIt = support.usable ? it : it.skip;

let workDir: string;
let daemons: number[];

beforeEach(() => {
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-cgroup-'));
  daemons = [];
});
afterEach(() => {
  for (const pid of daemons) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone, as it should be.
    }
  }
  rmSync(workDir, { recursive: true, force: true });
});

function assignment(script: string): JobAssignment {
  return {
    job_id: randomUUID(),
    attempt: 1,
    job: {
      name: 'daemon',
      image: '',
      command: ['sh', '-c', script],
      environment: {},
      timeout: { secs: 60, nanos: 0 },
      resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: { workspace_id: 'w', pipeline_id: 'p', build_number: 1, git_ref: 'main', variables: {}, secrets: {} },
    priority: 'Normal',
  };
}

/** Starts a job whose first act is a setsid daemon; `then` is what the job does after. */
function jobWithDaemon(guards: JobGuards, then: string): { runner: JobRunner; pidFile: string; chunks: LogChunkData[]; cgroup: string } {
  const pidFile = join(workDir, `daemon-${randomUUID()}.pid`);
  const job = assignment(`setsid sh -c 'echo $$ > ${pidFile}; exec sleep 300' & while [ ! -s ${pidFile} ]; do sleep 0.01; done; echo up; ${then}`);
  const chunks: LogChunkData[] = [];
  const runner = new JobRunner({ assignment: job, workDir, guard: guards.guard(job.job_id, 1), onChunk: (c) => chunks.push(c), logger });
  const cgroup = support.usable ? join(support.base, `muster-job-${job.job_id}-1`) : '';
  return { runner, pidFile, chunks, cgroup };
}

function daemonPid(pidFile: string): number {
  const pid = Number(readFileSync(pidFile, 'utf8'));
  daemons.push(pid);
  return pid;
}

/** A logger whose lines land in `lines`. */
function capture(lines: Array<Record<string, unknown>>): Logger {
  return pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
}

describe('jobs in cgroups', () => {
  it('says at start-up, in one line, whether jobs run in cgroups and why not', () => {
    const off: Array<Record<string, unknown>> = [];
    new JobGuards(workDir, capture(off), { cgroups: false });
    expect(off).toEqual([expect.objectContaining({ level: 40, reason: 'turned off', msg: expect.stringMatching(/without cgroups/) })]);
    const auto: Array<Record<string, unknown>> = [];
    new JobGuards(workDir, capture(auto));
    expect(auto).toHaveLength(1);
    expect(auto[0]).toMatchObject(support.usable ? { cgroup_base: support.base } : { reason: support.reason });
  });

  cgroupIt(`kill a setsid daemon when the job ends, and remove the job's cgroup${skipped}`, async () => {
    const { runner, pidFile, cgroup } = jobWithDaemon(new JobGuards(workDir, logger), 'exit 0');
    expect((await runner.done).result.status).toBe('Completed');
    const pid = daemonPid(pidFile);
    await until('the daemon is gone', () => !isRunning(pid));
    await until('the cgroup is removed', () => !existsSync(cgroup));
  });

  cgroupIt(`kill a setsid daemon when the job is cancelled${skipped}`, async () => {
    const { runner, pidFile, chunks } = jobWithDaemon(new JobGuards(workDir, logger), 'sleep 300');
    await until('the job is up', () => chunks.length > 0);
    const pid = daemonPid(pidFile);
    expect(isRunning(pid)).toBe(true);
    runner.cancel('operator');
    expect((await runner.done).result.status).toBe('Cancelled');
    await until('the daemon is gone', () => !isRunning(pid));
  });
});
