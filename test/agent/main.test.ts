import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobAssignment, register } from './agent-process.js';
import { FakePlane } from './fake-plane.js';
import { nodeArgs } from '../muster-process.js';

const FIXTURE = join(import.meta.dirname, 'fixtures', 'run-agent.ts');

let plane: FakePlane;
let workDir: string;
let child: ChildProcess | undefined;

beforeEach(async () => {
  plane = await FakePlane.start();
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-agent-main-'));
});

afterEach(async () => {
  child?.kill('SIGKILL');
  await plane.close();
  rmSync(workDir, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What it wrote to stderr (with `stderr: 'pipe'`). */
  stderr: string;
}

function startAgentProcess(
  options: { stdout?: 'ignore' | 'pipe'; stderr?: 'inherit' | 'pipe'; env?: Record<string, string> } = {},
): { exited: Promise<Exit> } {
  child = spawn(process.execPath, nodeArgs(FIXTURE), {
    env: { ...process.env, PLANE_URL: plane.url, WORK_DIR: workDir, ...options.env },
    stdio: ['ignore', options.stdout ?? 'ignore', options.stderr ?? 'inherit'],
  });
  const proc = child;
  let stderr = '';
  proc.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return {
    exited: new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal, stderr }))),
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('muster agent process', () => {
  it('on SIGTERM finishes the running job while heartbeating Draining, deregisters and exits 0', async () => {
    const { exited } = startAgentProcess();
    const conn = await plane.nextConnection(20_000);
    const nodeId = await register(conn);
    const assignment = jobAssignment(['sh', '-c', 'sleep 1; echo finished']);
    conn.send('JobAssignment', assignment);
    await conn.next('JobAccepted');
    child!.kill('SIGTERM');
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    const result = await conn.next('JobResult');
    expect(result.data.result).toMatchObject({ status: 'Completed', stdout: 'finished\n' });
    conn.send('JobResultAck', { job_id: assignment.job_id, attempt: 1 });
    expect((await conn.next('Deregister')).data.node_id).toBe(nodeId);
    expect(await exited).toMatchObject({ code: 0, signal: null });
  });

  it('on a second signal kills the jobs and exits at once', async () => {
    const { exited } = startAgentProcess();
    const conn = await plane.nextConnection(20_000);
    await register(conn);
    const pidFile = join(os.tmpdir(), `muster-job-${randomUUID()}.pid`);
    conn.send('JobAssignment', jobAssignment(['sh', '-c', `echo $$ > ${pidFile}; echo up; exec sleep 60`]));
    await conn.next('LogChunk');
    const jobPid = Number(readFileSync(pidFile, 'utf8'));
    rmSync(pidFile);
    expect(isAlive(jobPid)).toBe(true);
    child!.kill('SIGTERM');
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    child!.kill('SIGTERM');
    expect(await exited).toMatchObject({ code: 143, signal: null });
    // The job's process group was killed on the way out.
    for (let i = 0; i < 50 && isAlive(jobPid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(jobPid)).toBe(false);
  });

  // `muster agent ... | head -8`, with the plane not (yet) up: the reader is gone once it has its
  // lines, and the lines the agent writes on its way out meet a closed pipe. pino's exit flush
  // used to retry that write every 100 ms for ever, so the agent never exited.
  it('exits on SIGTERM when its stdout is a closed pipe', async () => {
    const nobody = await unusedPortUrl();
    const { exited } = startAgentProcess({
      stdout: 'pipe',
      env: { LOG_LEVEL: 'info', PLANE_URL: nobody, BACKOFF_BASE_MS: '600000' },
    });
    await lineContaining(child!.stdout!, 'cannot reach control plane');
    // Close the reading end, as `head` does once it has its lines.
    child!.stdout!.destroy();
    child!.kill('SIGTERM');
    expect(await exited).toMatchObject({ code: 0, signal: null });
  });

  for (const code of ['auth_failed', 'token_expired', 'token_revoked', 'forbidden'] as const) {
    it(`stops with one line and status 1 when the plane refuses its registration token with ${code}`, async () => {
      const { exited } = startAgentProcess({ stderr: 'pipe' });
      const conn = await plane.nextConnection(20_000);
      await conn.next('RegisterNode');
      conn.send('Error', { code, message: 'refused by the test', fatal: true });
      conn.drop();
      const { code: status, stderr } = await exited;
      expect(status).toBe(1);
      expect(stderr).toMatch(new RegExp(`^muster: [^\\n]*\\(${code}: refused by the test\\)\\n$`));
    });
  }

  it('still retries after shutting_down', async () => {
    startAgentProcess();
    const first = await plane.nextConnection(20_000);
    await first.next('RegisterNode');
    first.send('Error', { code: 'shutting_down', message: 'bye', fatal: true });
    first.drop();
    const second = await plane.nextConnection(20_000);
    expect((await second.next('RegisterNode')).data.auth_token).toBe('registration.jwt.token');
  });

  it('says so and stops when pointed at an HTTP server', async () => {
    const server = http.createServer((_req, res) => res.end('hello'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const { exited } = startAgentProcess({ stderr: 'pipe', env: { PLANE_URL: `tcp://127.0.0.1:${port}` } });
      const { code, stderr } = await exited;
      expect(code).toBe(1);
      expect(stderr).toMatch(/^muster: tcp:\/\/127\.0\.0\.1:\d+: this looks like an HTTP server: the node listener is on 7420[^\n]*\n$/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('refuses a URL of a scheme it does not dial, before dialling', async () => {
    const { exited } = startAgentProcess({ stderr: 'pipe', env: { PLANE_URL: 'http://127.0.0.1:7480' } });
    const { code, stderr } = await exited;
    expect(code).toBe(1);
    expect(stderr).toContain('the agent dials tcp://, tls://, unix://, ws://, wss://, grpc://, grpcs://');
  });
});

/** A URL where nothing listens: a port that was free a moment ago. */
async function unusedPortUrl(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `tcp://127.0.0.1:${port}`;
}

/** Resolves once a line of `stream` contains `text`. */
function lineContaining(stream: NodeJS.ReadableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('utf8');
      if (!seen.includes(text)) return;
      stream.off('data', onData);
      resolve();
    };
    stream.on('data', onData);
    stream.once('end', () => reject(new Error(`the stream ended without "${text}"`)));
  });
}
