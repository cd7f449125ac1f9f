// Helpers for tests that run the agent as a real process (fixtures/run-agent.ts) against the
// fake plane and look at the processes its jobs leave.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MessageData } from '../../protocol/messages.js';
import type { PlaneConn } from './fake-plane.js';
import { nodeArgs } from '../muster-process.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'run-agent.ts');

export interface AgentProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `muster agent` in a process of its own, dialling `planeUrl`, jobs under `workDir`. */
export function startAgentProcess(planeUrl: string, workDir: string, env: Record<string, string> = {}): AgentProcess {
  const child = spawn(process.execPath, nodeArgs(FIXTURE), {
    env: { ...process.env, PLANE_URL: planeUrl, WORK_DIR: workDir, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return { child, exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))) };
}

export function jobAssignment(command: string[], jobId = randomUUID(), attempt = 1): MessageData<'JobAssignment'> {
  return {
    job_id: jobId,
    attempt,
    job: {
      name: 't',
      image: '',
      command,
      environment: {},
      timeout: { secs: 60, nanos: 0 },
      resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: { workspace_id: 'w', pipeline_id: 'p', build_number: 1, git_ref: 'main', variables: {}, secrets: {} },
    priority: 'Normal',
  };
}

/** Answers the agent's RegisterNode; returns the node id given. */
export async function register(conn: PlaneConn): Promise<string> {
  await conn.next('RegisterNode', 20_000);
  const nodeId = randomUUID();
  conn.send('RegisterAck', {
    node_id: nodeId,
    session_token: 's',
    session_expires_at: '2099-01-01T00:00:00Z',
    heartbeat_interval_ms: 200,
    protocol_version: 1,
    control_plane_id: 'fake',
    resumed: false,
  });
  return nodeId;
}

/** Fields of /proc/<pid>/stat from field 3 (state) on; undefined once the pid is free. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** True while `pid` runs. A zombie does not: nothing here reaps orphans (PID 1 may not). */
export function isRunning(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== 'Z';
}

/** Pids of the live (not zombie) processes in process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(name);
    // Field 5 (index 2) is the process group.
    if (fields !== undefined && fields[0] !== 'Z' && Number(fields[2]) === pgid) members.push(Number(name));
  }
  return members;
}

/** Child pids of `pid` whose command line contains `text`. */
export function childrenMatching(pid: number, text: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const fields = statFields(name);
    // Field 4 (index 1) is the parent.
    if (fields === undefined || Number(fields[1]) !== pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(text)) found.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/**
 * Resolves once `done()` holds; polls the process table, which has no event to await.
 * Rejects after `timeoutMs`, a deadline far above the expected time so load cannot fail it.
 */
export async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
