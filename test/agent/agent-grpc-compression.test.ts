// The agent over gRPC compresses with gRPC's own message compression (PROTOCOL.md section 8):
// a real plane and a real agent in this process, every byte from the agent counted by a TCP
// proxy in front of the plane's gRPC listener. A job's large output crosses in a fraction of its
// size and is stored exactly as printed; behind payload encryption nothing is compressed, so
// the same output costs more than its size on the wire.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import { createLogger } from '../../observability/logger.js';
import { toNewJob } from '../../supervisor/admin/job-request.js';
import { TERMINAL_STATES } from '../../supervisor/store/job-store.js';
import { loadEncryptionKey } from '../../transports/payload-cipher.js';
import { TcpProxy } from '../supervisor/cluster/tcp-proxy.js';
import { startSecurityPlane, until, type SecurityPlane } from '../supervisor/security-plane.js';

const LINES = 5_000;
// `line 0 of a build log` ... : about 130 KB, several LogChunks of up to 64 KiB and a result tail.
const EXPECTED = Array.from({ length: LINES }, (_, i) => `line ${i} of a build log, compiling module-${i % 97}\n`).join('');
const COMMAND = ['sh', '-c', `i=0; while [ $i -lt ${LINES} ]; do echo "line $i of a build log, compiling module-$((i % 97))"; i=$((i+1)); done`];

const dir = mkdtempSync(join(tmpdir(), 'muster-agent-grpc-compression-'));
const keyFile = join(dir, 'payload.key');
writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
const cleanups: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn();
  rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  p: SecurityPlane;
  proxy: TcpProxy;
  agent: Agent;
}

async function setUp(encrypting: boolean): Promise<Setup> {
  const p = await startSecurityPlane({ grpc: '127.0.0.1:0', ...(encrypting ? { encryptKeyFile: keyFile } : {}) });
  cleanups.push(() => p.stop());
  const grpcUrl = p.plane.nodeUrls.find((u) => u.startsWith('grpc://'))!;
  const proxy = await TcpProxy.start(Number(new URL(grpcUrl).port));
  cleanups.push(() => proxy.close());
  const agent = startAgent({
    urls: [`grpc://127.0.0.1:${proxy.port}`],
    token: await p.registrationToken(),
    workDir: join(dir, encrypting ? 'encrypting' : 'plain'),
    logger: createLogger({ level: 'silent' }),
    ...(encrypting ? { encryptionKey: loadEncryptionKey(keyFile) } : {}),
  });
  cleanups.push(() => agent.stop());
  await until('the agent registers', () => agent.isRegistered);
  return { p, proxy, agent };
}

/** Runs the job; the bytes the agent sent meanwhile, and what the plane stored. */
async function runJob({ p, proxy }: Setup): Promise<{ wireBytes: number; logs: string; stdout: string | undefined }> {
  const before = proxy.upstreamBytes;
  const job = await p.plane.api.submitJob(toNewJob({ job: { command: COMMAND }, max_attempts: 1 }, p.plane.api.defaults));
  await until('the job ends', async () => TERMINAL_STATES.has((await p.plane.api.getJob(job.job_id))?.state ?? 'Queued'), 20_000);
  const stored = await p.plane.api.getJob(job.job_id);
  expect(stored?.state).toBe('Completed');
  const logs = (await p.plane.api.jobLogs(job.job_id))!.map((l) => l.data).join('');
  return { wireBytes: proxy.upstreamBytes - before, logs, stdout: stored?.result?.stdout };
}

describe('the agent over gRPC', () => {
  it('sends a large output compressed by gRPC, and the plane stores it exactly', async () => {
    const { wireBytes, logs, stdout } = await runJob(await setUp(false));
    expect(logs).toBe(EXPECTED);
    expect(EXPECTED.endsWith(stdout!)).toBe(true);
    // Uncompressed, the log chunks alone would be EXPECTED.length and the result's tail 64 KiB more.
    expect(wireBytes).toBeLessThan(EXPECTED.length / 4);
  });

  it('compresses nothing behind payload encryption', async () => {
    const { wireBytes, logs } = await runJob(await setUp(true));
    expect(logs).toBe(EXPECTED);
    expect(wireBytes).toBeGreaterThan(EXPECTED.length);
  });
});
