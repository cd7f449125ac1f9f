// The library API (`import { createControlPlane, createAgent } from 'muster'`) against a real
// plane and real agents in this process: its events, message handlers, messages to a node, and
// the example that `npm run example` runs, as a child process.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, createControlPlane, MusterError, type MusterAgent, type MusterPlane, type NodeEvent } from 'muster';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const logger = pino({ level: 'silent' });

describe('the library', () => {
  let dir: string;
  let plane: MusterPlane;
  let agent: MusterAgent;
  let nodeId: string;
  const nodeEvents: Array<[string, NodeEvent]> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'muster-library-'));
    plane = await createControlPlane({
      env: {},
      logger,
      config: { dataDir: join(dir, 'plane'), tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: 'off', jwtSecret: 'library-test-secret-0123456789abcdefghij' },
    });
    for (const name of ['nodeRegistered', 'nodeStateChanged', 'nodeGone'] as const) plane.on(name, (e) => nodeEvents.push([name, e]));
    const { token } = await plane.mintToken('node');
    agent = createAgent({ urls: [...plane.nodeUrls], token, workDir: join(dir, 'agent'), name: 'lib-runner', logger });
    nodeId = await agent.registered();
  });

  afterAll(async () => {
    await agent?.stop();
    await plane?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tells of a node once when it registers, then of its states', () => {
    expect(nodeEvents.filter(([name]) => name === 'nodeRegistered').map(([, e]) => e.node_id)).toEqual([nodeId]);
    expect(nodeEvents.find(([name]) => name === 'nodeStateChanged')?.[1]).toEqual({ node_id: nodeId, state: 'ready', owner: plane.id });
  });

  it('runs a submitted job, shows its messages to handlers, and says when it finished', async () => {
    const seen: string[] = [];
    const stopA = plane.onMessage('JobAccepted', (m, sender) => seen.push(`accepted ${m.data.job_id} from ${sender.nodeId}`));
    const stopR = plane.onMessage('JobResult', (m) => seen.push(`result ${m.data.job_id} ${m.data.result.status}`));
    // A handler that throws changes nothing for the plane.
    const stopT = plane.onMessage('JobResult', () => {
      throw new Error('embedder bug');
    });
    const finished: string[] = [];
    const stopF = plane.on('jobFinished', (e) => finished.push(`${e.job_id} ${e.state}`));
    const job = await plane.submitJob({ job: { command: ['sh', '-c', 'exit 3'] } });
    const done = await plane.waitForJob(job.job_id);
    expect(done.state).toBe('Failed');
    expect(done.result?.exit_code).toBe(3);
    expect(seen).toEqual([`accepted ${job.job_id} from ${nodeId}`, `result ${job.job_id} Failed`]);
    expect(finished).toEqual([`${job.job_id} Failed`]);
    expect(agent.stats()).toMatchObject({ registered: true, node_id: nodeId, jobs_started: 1, jobs_finished: 1, jobs_running: 0 });
    for (const stop of [stopA, stopR, stopT, stopF]) stop();
  });

  it('carries a large output intact (the agent and the plane agree on deflate over TCP)', async () => {
    const job = await plane.submitJob({ job: { command: ['sh', '-c', 'i=0; while [ $i -lt 2000 ]; do echo "line $i of a build log"; i=$((i+1)); done'] } });
    expect((await plane.waitForJob(job.job_id)).state).toBe('Completed');
    const logs = (await plane.jobLogs(job.job_id)).map((l) => l.data).join('');
    expect(logs.split('\n').filter((l) => l !== '')).toEqual(Array.from({ length: 2000 }, (_, i) => `line ${i} of a build log`));
  });

  it('refuses a submission as the API does, naming the field', async () => {
    await expect(plane.submitJob({ job: { command: [] } } as never)).rejects.toMatchObject({ code: 'invalid_message', field: 'job.command' });
  });

  it('sends an embedder only the messages that keep the plane its own bookkeeping', async () => {
    expect(() => plane.sendToNode(nodeId, 'JobAssignment' as never, {} as never)).toThrow(MusterError);
    expect(plane.sendToNode('00000000-0000-4000-8000-000000000000', 'Drain', {})).toBe(false);
    const draining = new Promise<void>((resolve) => {
      const stop = plane.on('nodeStateChanged', (e) => {
        if (e.node_id === nodeId && e.state === 'draining') {
          stop();
          resolve();
        }
      });
    });
    expect(plane.sendToNode(nodeId, 'Drain', {})).toBe(true);
    await draining;
  });

  it('tells when a node is gone (its agent drained and deregistered)', async () => {
    const gone = new Promise<NodeEvent>((resolve) => plane.on('nodeGone', resolve));
    await agent.drain();
    expect(await gone).toEqual({ node_id: nodeId, state: 'dead', owner: plane.id });
  });
});

describe('npm run example', () => {
  it('starts a plane and two agents in one process, runs its jobs, prints the stats and stops', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/node-communication.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, err).toBe(0);
    expect(out.match(/^node .* registered$/gm)).toHaveLength(2);
    expect(out).toContain('sh -c exit 3 → Failed, exit 3');
    expect(out.match(/→ Completed, exit 0/g)).toHaveLength(5);
    const stats = JSON.parse(/^plane stats: (.*)$/m.exec(out)![1]!) as Record<string, number>;
    expect(stats).toMatchObject({ jobs_Completed: 5, jobs_Failed: 1, nodes: 2 });
    expect(out).toMatch(/^drain sent to .*: true$/m);
  }, 60_000);
});
