// A node whose connection drops, in a real in-process control plane over TCP: the node actor
// decides at once that it is disconnected (shown in `GET /v1/nodes` in the same event-loop
// turn as the plane learns of the close), the scheduler places no job on it, and it stays
// known until it resumes on a new connection or its heartbeat window ends (PROTOCOL.md 4.6, 4.8).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import type { NewJob } from '../../../supervisor/store/job-store.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import { NodeClient } from '../node-client.js';

const logger = createLogger({ level: 'silent' });
let dataDir: string;
let plane: ControlPlane;
const clients: NodeClient[] = [];

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-disconnect-'));
  // A long window: nothing here may depend on the node expiring.
  const config = loadConfig({
    env: {},
    overrides: { dataDir, tcp: '127.0.0.1:0', unix: 'off', http: '127.0.0.1:0', ws: 'off', grpc: 'off', heartbeatIntervalMs: 60_000 },
  });
  plane = await startControlPlane(config, logger);
});

afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
});

afterAll(async () => {
  await plane?.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function registeredNode(hostname: string): Promise<NodeClient> {
  const c = await NodeClient.connect(plane.nodeUrls[0]!);
  clients.push(c);
  await c.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }), hostname });
  return c;
}

/** The first bus event that `matches`, with what `GET /v1/nodes` answered in that same turn. */
function nextNodeEvent(matches: (event: BusEvent) => boolean): Promise<{ event: BusEvent; views: NodeView[] }> {
  return new Promise((resolve) => {
    const unsubscribe = plane.bus.subscribe((event) => {
      if (!matches(event)) return;
      unsubscribe();
      resolve({ event, views: plane.api.listNodes() });
    });
  });
}

async function getNodes(): Promise<NodeView[]> {
  const token = await plane.tokens.mintApiToken({ role: 'viewer', ttlSeconds: 60 });
  const res = await fetch(`${plane.httpUrl}/v1/nodes`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as NodeView[];
}

function job(): NewJob {
  return {
    job: {
      name: 'true',
      image: '',
      command: ['true'],
      environment: {},
      timeout: { secs: 60, nanos: 0 },
      resource_requirements: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
    priority: 'Normal',
    selector: {},
    max_attempts: 3,
  };
}

describe('a node whose connection drops', () => {
  it('is shown disconnected at once, gets no job, and stays known for its window', async () => {
    const dropped = await registeredNode('dropped.example.test');
    const nodeId = dropped.nodeId!;
    expect((await getNodes()).find((v) => v.node_id === nodeId)).toMatchObject({ state: 'ready', connected: true });

    const seen = nextNodeEvent((e) => e.kind === 'node' && e.node_id === nodeId);
    dropped.destroy();
    const { event, views } = await seen;
    // In the turn the plane learnt of the close: no longer ready, and says why.
    expect(event).toMatchObject({ kind: 'node', state: 'busy' });
    expect(views.find((v) => v.node_id === nodeId)).toMatchObject({ state: 'busy', connected: false });
    expect((await getNodes()).find((v) => v.node_id === nodeId)).toMatchObject({ state: 'busy', connected: false });

    // A job submitted now waits for a connected node rather than going to the dropped one.
    const submitted = await plane.api.submitJob(job());
    const bystander = await registeredNode('bystander.example.test');
    const assignment = await bystander.next('JobAssignment');
    expect(assignment.message.data.job_id).toBe(submitted.job_id);
    expect((await plane.api.getJob(submitted.job_id))?.node_id).toBe(bystander.nodeId);
    const after = await getNodes();
    expect(after.find((v) => v.node_id === nodeId)).toMatchObject({ state: 'busy', connected: false, running_jobs: [] });
  });

  it('is connected and ready again when it resumes with its session token', async () => {
    const first = await registeredNode('resumer.example.test');
    const nodeId = first.nodeId!;
    const seen = nextNodeEvent((e) => e.kind === 'node' && e.node_id === nodeId);
    first.destroy();
    await seen;

    const back = await NodeClient.connect(plane.nodeUrls[0]!);
    clients.push(back);
    const ack = await back.register({
      token: first.sessionToken!,
      hostname: 'resumer.example.test',
      resume: { node_id: nodeId, running_jobs: [], unacked_results: [] },
    });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    expect((await getNodes()).filter((v) => v.node_id === nodeId)).toMatchObject([{ state: 'ready', connected: true }]);
  });
});
