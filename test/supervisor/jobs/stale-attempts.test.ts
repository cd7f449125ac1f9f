// A job runs on at most one node at a time (PROTOCOL.md 4.5): a node that comes back after
// the plane took its job back, and says it still runs it, is told to cancel that attempt.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import { NodeClient } from '../node-client.js';
import { TCP_ONLY } from '../tcp-only.js';

const HEARTBEAT_MS = 200;
let plane: ControlPlane;
let dataDir: string;
const clients: NodeClient[] = [];

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-stale-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      ...TCP_ONLY,
      http: '127.0.0.1:0',
      heartbeatIntervalMs: HEARTBEAT_MS,
      missedHeartbeats: 1,
    },
  });
  plane = await startControlPlane(config, createLogger({ level: 'silent' }));
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await plane.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a node that resumes with a job the plane took back', () => {
  it('is sent CancelJob for its stale attempt', async () => {
    const first = await NodeClient.connect(plane.nodeUrls[0]!);
    clients.push(first);
    await first.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
    first.startHeartbeats(HEARTBEAT_MS / 2);
    const nodeId = first.nodeId!;
    const sessionToken = first.sessionToken!;

    const job = await plane.api.submitJob({
      job: { name: 'x', image: '', command: ['sleep', '60'], environment: {}, timeout: { secs: 600, nanos: 0 }, resource_requirements: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } },
      execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
      priority: 'Normal',
      selector: {},
      max_attempts: 5,
    });
    const assignment = await first.next('JobAssignment');
    expect(assignment.message.data).toMatchObject({ job_id: job.job_id, attempt: 1 });
    first.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: 1 } }, 'json');
    await until('the job runs', async () => (await plane.api.getJob(job.job_id))?.state === 'Running');

    // The node goes silent and is declared dead: its attempt is taken back.
    first.stopHeartbeats();
    first.destroy();
    await until('the job is requeued as attempt 2', async () => (await plane.api.getJob(job.job_id))?.attempt === 2);

    // It comes back, still running attempt 1.
    const back = await NodeClient.connect(plane.nodeUrls[0]!);
    clients.push(back);
    const ack = await back.register({
      token: sessionToken,
      resume: { node_id: nodeId, running_jobs: [job.job_id], unacked_results: [] },
    });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    back.startHeartbeats(HEARTBEAT_MS / 2);
    // Other frames (a new JobAssignment for attempt 2, say) may come first: look for the cancel.
    let cancel: { job_id: string; attempt: number } | undefined;
    while (cancel === undefined) {
      const received = await back.next(undefined, 5_000);
      if (received.message.type === 'CancelJob') cancel = received.message.data;
    }
    expect(cancel).toMatchObject({ job_id: job.job_id, attempt: 1 });
  });
});
