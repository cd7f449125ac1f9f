// A real plane and a real node over TCP: queued jobs say why they wait in `GET /v1/jobs/{id}`
// (`waiting_for`), and jobs the node can take are assigned to it past those it cannot take.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import type { JobAnswer } from '../../../supervisor/admin/wire-types.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import type { NewJob } from '../../../supervisor/store/job-store.js';
import { NodeClient } from '../node-client.js';

let plane: ControlPlane;
let dataDir: string;
let node: NodeClient;
let apiToken: string;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-waiting-'));
  const config = loadConfig({
    env: {},
    overrides: { dataDir, tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: '127.0.0.1:0' },
  });
  plane = await startControlPlane(config, createLogger({ level: 'silent' }));
  apiToken = await plane.tokens.mintApiToken({ role: 'viewer', ttlSeconds: 600 });
});

afterAll(async () => {
  node?.destroy();
  await plane.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function job(selector: NewJob['selector'], cpu = 1): NewJob {
  return {
    job: { name: 'x', image: '', command: ['true'], environment: {}, timeout: { secs: 600, nanos: 0 }, resource_requirements: { cpu_cores: cpu, memory_mb: 0, disk_gb: 0 } },
    execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
    priority: 'Critical',
    selector,
    max_attempts: 1,
  };
}

async function get(jobId: string): Promise<JobAnswer> {
  const response = await fetch(`${plane.httpUrl}/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${apiToken}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as JobAnswer;
}

describe('waiting_for', () => {
  it('names why each queued job waits, and the node gets the jobs it can take', async () => {
    const mac = await plane.api.submitJob(job({ runner_type: 'macos' }));
    const huge = await plane.api.submitJob(job({}, 64));
    const early = await plane.api.submitJob(job({ runner_type: 'docker' }, 8));
    expect((await get(early.job_id)).waiting_for).toBe('no_matching_node');

    // The sample node: docker and shell, 8 cores.
    node = await NodeClient.connect(plane.nodeUrls[0]!);
    await node.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
    const { message } = await node.next('JobAssignment');
    expect(message.data.job_id).toBe(early.job_id);
    const later = await plane.api.submitJob(job({ runner_type: 'shell' }));

    expect((await get(mac.job_id)).waiting_for).toBe('no_matching_node');
    expect((await get(huge.job_id)).waiting_for).toBe('no_matching_node');
    expect((await get(later.job_id)).waiting_for).toBe('matching_nodes_full');
    const assigned = await get(early.job_id);
    expect(assigned.state).toBe('Assigned');
    expect(assigned.waiting_for).toBeUndefined();

    // The node leaves: no node matches any more.
    node.send({ type: 'Deregister', data: { node_id: node.nodeId, reason: 'done' } });
    await node.closedWithin();
    expect((await get(later.job_id)).waiting_for).toBe('no_matching_node');
  });
});
