// A job's processes do not outlive the agent that started them (issue 8, item 1): a real
// agent process runs a real job that appends to a ledger, and is killed with `kill -9`.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectCgroupSupport } from '../../agent/job-cgroup.js';
import { childrenMatching, groupMembers, isRunning, jobAssignment, register, startAgentProcess, until, type AgentProcess } from './agent-process.js';
import { FakePlane } from './fake-plane.js';

const cgroups = detectCgroupSupport();

let plane: FakePlane;
let workDir: string;
let scratch: string;
let agents: AgentProcess[];
let jobPids: number[];

beforeEach(async () => {
  plane = await FakePlane.start();
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-agent-death-'));
  scratch = mkdtempSync(join(os.tmpdir(), 'muster-ledger-'));
  agents = [];
  jobPids = [];
});

afterEach(async () => {
  for (const a of agents) a.child.kill('SIGKILL');
  // Whatever a failed test left running.
  for (const pid of jobPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone, as it should be.
    }
  }
  await plane.close();
  rmSync(workDir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

/** Starts an agent with a job that appends to a ledger every 50 ms; returns the job's pid. */
async function agentWithLedgerJob(): Promise<{ agent: AgentProcess; jobPid: number; ledger: string }> {
  const agent = startAgentProcess(plane.url, workDir);
  agents.push(agent);
  const conn = await plane.nextConnection(20_000);
  await register(conn);
  const pidFile = join(scratch, 'job.pid');
  const ledger = join(scratch, 'ledger');
  const script = `echo $$ > ${pidFile}; echo up; while :; do echo tick >> ${ledger}; sleep 0.05; done`;
  conn.send('JobAssignment', jobAssignment(['sh', '-c', script]));
  await conn.next('LogChunk');
  const jobPid = Number(readFileSync(pidFile, 'utf8'));
  jobPids.push(jobPid);
  await until('the ledger grows', () => statSync(ledger, { throwIfNoEntry: false }) !== undefined);
  expect(isRunning(jobPid)).toBe(true);
  return { agent, jobPid, ledger };
}

describe('an agent that dies', () => {
  it('takes its jobs with it when killed with kill -9', async () => {
    const { agent, jobPid } = await agentWithLedgerJob();
    agent.child.kill('SIGKILL');
    expect((await agent.exited).signal).toBe('SIGKILL');
    // The job's whole process group (its shell and its `sleep`s): nothing writes the ledger any more.
    await until('the job process group is gone', () => groupMembers(jobPid).length === 0);
  });

  it('kills, when restarted, the jobs its earlier run left behind', async () => {
    const { agent, jobPid } = await agentWithLedgerJob();
    // Take the watchdog first, as the OOM killer or a kill of the whole tree might.
    const watchdogs = childrenMatching(agent.child.pid!, 'muster-job-watchdog');
    expect(watchdogs).toHaveLength(1);
    process.kill(watchdogs[0]!, 'SIGKILL');
    await until('the watchdog is gone', () => !isRunning(watchdogs[0]!));
    agent.child.kill('SIGKILL');
    await agent.exited;
    expect(isRunning(jobPid)).toBe(true);

    agents.push(startAgentProcess(plane.url, workDir));
    await until('the leftover job is killed', () => groupMembers(jobPid).length === 0);
    // Its record goes once all of it is gone (its cgroup too, where it had one).
    await until('the records are cleared', () => readdirSync(join(workDir, '.jobs')).length === 0);
  });

  (cgroups.usable ? it : it.skip)(
    `takes a job's setsid daemon with it when killed with kill -9${cgroups.usable ? '' : ` (skipped: ${cgroups.reason})`}`,
    async () => {
      const agent = startAgentProcess(plane.url, workDir);
      agents.push(agent);
      const conn = await plane.nextConnection(20_000);
      await register(conn);
      const pidFile = join(scratch, 'daemon.pid');
      const script = `setsid sh -c 'echo $$ > ${pidFile}; exec sleep 300' & while [ ! -s ${pidFile} ]; do sleep 0.01; done; echo up; sleep 300`;
      const job = jobAssignment(['sh', '-c', script]);
      conn.send('JobAssignment', job);
      await conn.next('LogChunk');
      const daemon = Number(readFileSync(pidFile, 'utf8'));
      jobPids.push(daemon);
      expect(isRunning(daemon)).toBe(true);
      agent.child.kill('SIGKILL');
      await agent.exited;
      await until('the daemon is gone', () => !isRunning(daemon));
      if (cgroups.usable) await until('the job cgroup is removed', () => !existsSync(join(cgroups.base, `muster-job-${job.job_id}-1`)));
    },
  );
});
