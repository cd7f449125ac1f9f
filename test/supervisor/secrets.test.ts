// A job's secrets reach only the node that runs it: they never show in the plane's or the
// agent's logs, in API answers (redacted as `***`), or in stored output (the agent masks them).
// A real plane and a real agent in this process, over a real TCP connection.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import { createLogger } from '../../observability/logger.js';
import { loadConfig } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import { TERMINAL_STATES } from '../../supervisor/store/job-store.js';

const SECRET = 's3cr3t-Value-7f1c9a';

/** Everything a logger writes, as text. */
function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

let dir: string;
let plane: ControlPlane;
let agent: Agent;
const planeLog = capture();
const agentLog = capture();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muster-secrets-'));
  const config = loadConfig({
    env: {},
    overrides: { dataDir: join(dir, 'plane'), tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: '127.0.0.1:0' },
  });
  // Debug level: the most the plane would ever write about a job.
  plane = await startControlPlane(config, createLogger({ level: 'debug', destination: planeLog.stream }));
  const tcp = plane.nodeUrls.find((u) => u.startsWith('tcp:'))!;
  agent = startAgent({
    urls: [tcp],
    token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }),
    workDir: join(dir, 'agent'),
    logger: createLogger({ level: 'debug', destination: agentLog.stream }),
  });
});

afterAll(async () => {
  await agent.stop();
  await plane.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves when the plane's bus says the job reached a final state (or it already had); fails after 20 s. */
async function ended(jobId: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`job ${jobId} did not end within 20 s`));
    }, 20_000);
    const done = (): void => {
      clearTimeout(timer);
      stop();
      resolve();
    };
    const stop = plane.bus.subscribe((event) => {
      if (event.kind === 'job' && event.job_id === jobId && TERMINAL_STATES.has(event.state)) done();
    });
    void plane.api.getJob(jobId).then((job) => {
      if (job !== undefined && TERMINAL_STATES.has(job.state)) done();
    });
  });
}

describe('job secrets', () => {
  it('reach the job but show nowhere else', async () => {
    const operator = await plane.tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
    const headers = { authorization: `Bearer ${operator}`, 'content-type': 'application/json' };
    const submitted = await fetch(`${plane.httpUrl}/v1/jobs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        job: { command: ['sh', '-c', 'echo "token is $DEPLOY_TOKEN"; echo "$DEPLOY_TOKEN" >&2; test "$DEPLOY_TOKEN" = "$EXPECTED"'] },
        execution_context: { secrets: { DEPLOY_TOKEN: SECRET }, variables: { EXPECTED: SECRET } },
      }),
    });
    expect(submitted.status).toBe(201);
    const { job_id: jobId } = (await submitted.json()) as { job_id: string };

    await ended(jobId);
    const answer = await (await fetch(`${plane.httpUrl}/v1/jobs/${jobId}`, { headers })).text();
    const job = JSON.parse(answer) as { state: string; result: { stdout: string; stderr: string; exit_code: number } };
    // The job saw the real value (its own comparison passed) ...
    expect(job.state).toBe('Completed');
    expect(job.result.exit_code).toBe(0);
    // ... and everything that left the node shows it masked.
    expect(job.result.stdout).toBe('token is ***\n');
    expect(job.result.stderr).toBe('***\n');
    const logs = await fetch(`${plane.httpUrl}/v1/jobs/${jobId}/logs`, { headers });
    const logText = await logs.text();
    expect(logText).toContain('token is ***');
    expect(answer).toContain('"DEPLOY_TOKEN":"***"');

    // The variable is not a secret: it is shown as given. Only secrets are masked.
    for (const [where, text] of [
      ['job answer', answer.replace(`"EXPECTED":"${SECRET}"`, '')],
      ['stored logs', logText],
      ['plane log', planeLog.text()],
      ['agent log', agentLog.text()],
    ] as const) {
      expect(text, where).not.toContain(SECRET);
    }
  });
});
