// The scheduler places queued jobs by priority then FIFO on nodes with room, never lets a job
// no node can take hold back one that a node can take, spreads (or packs) over matching nodes,
// reads nothing from the store once loaded, ends queued jobs whose deadline passed, holds a
// requeued attempt back, and says why a queued job waits. A real SQLite store and bus, model nodes.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SchedulerHarness, type ModelNode } from './scheduler-harness.js';
import { OWNER, newJob } from '../store/job-store-contract.js';

let harness: SchedulerHarness;

afterEach(async () => {
  vi.useRealTimers();
  await harness.close();
});

let nodeCount = 0;
function linux(cpu: number, overrides: Partial<ModelNode> = {}): Parameters<SchedulerHarness['addNode']>[0] {
  nodeCount++;
  return {
    nodeId: `00000000-0000-4000-8000-${String(nodeCount).padStart(12, '0')}`,
    runnerTypes: ['docker'],
    supportedJobTypes: [],
    tags: { os: 'linux' },
    maxResources: { cpu_cores: cpu, memory_mb: 65_536, disk_gb: 1_000 },
    ...overrides,
  };
}

describe('Scheduler', () => {
  it('places the highest priorities first, FIFO within one, as many as the node has room for', async () => {
    harness = new SchedulerHarness();
    const low = await harness.submit(newJob({ priority: 'Low' }));
    const normal1 = await harness.submit(newJob({ priority: 'Normal' }));
    const critical = await harness.submit(newJob({ priority: 'Critical' }));
    const normal2 = await harness.submit(newJob({ priority: 'Normal' }));
    await harness.settle();
    expect(harness.placements).toEqual([]);
    harness.addNode(linux(3)); // one-core slots: three jobs fit
    await harness.settle();
    expect(harness.placements.map((p) => p.job.job_id)).toEqual([critical.job_id, normal1.job_id, normal2.job_id]);
    expect((await harness.store.get(low.job_id))?.state).toBe('Queued');
  });

  it('places a job some node can take however many jobs no node can take are ahead of it', async () => {
    harness = new SchedulerHarness();
    harness.addNode(linux(1));
    for (let i = 0; i < 3_000; i++) await harness.submit(newJob({ priority: 'Critical', selector: { runner_type: 'macos' } }));
    const linuxJob = await harness.submit(newJob({ priority: 'Low' }));
    await harness.settle();
    expect(harness.placements.map((p) => p.job.job_id)).toEqual([linuxJob.job_id]);
  });

  it('reads nothing from the store once loaded, whatever wakes it', async () => {
    harness = new SchedulerHarness();
    harness.addNode(linux(0, { maxResources: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } }));
    for (let i = 0; i < 20; i++) await harness.submit(newJob({}));
    await harness.settle();
    const queued = vi.spyOn(harness.store, 'queued');
    const get = vi.spyOn(harness.store, 'get');
    for (let i = 0; i < 10; i++) harness.scheduler.wake();
    await harness.settle();
    expect(queued).not.toHaveBeenCalled();
    expect(get).not.toHaveBeenCalled();
    expect(harness.placements).toEqual([]); // the jobs want 512 MB; the node has none
  });

  it('loads the queue from the store at start', async () => {
    harness = new SchedulerHarness();
    const stored = await harness.store.submit(newJob({}), OWNER);
    await harness.scheduler.load();
    harness.addNode(linux(1));
    await harness.settle();
    expect(harness.placements.map((p) => p.job.job_id)).toEqual([stored.job_id]);
  });

  it('places no more jobs than the node has room for, and more as its jobs end', async () => {
    harness = new SchedulerHarness();
    for (let i = 0; i < 50; i++) await harness.submit(newJob({}));
    harness.addNode(linux(2));
    await harness.settle();
    expect(harness.placements).toHaveLength(2);
    expect(await harness.store.queued()).toHaveLength(48);
    await harness.finish(harness.placements[0]!.job.job_id);
    await harness.settle();
    expect(harness.placements).toHaveLength(3);
  });

  it('spreads jobs over idle nodes by default: 200 jobs on 200 nodes, one each', async () => {
    harness = new SchedulerHarness();
    for (let i = 0; i < 200; i++) harness.addNode(linux(8));
    for (let i = 0; i < 200; i++) await harness.submit(newJob({}));
    await harness.settle();
    const perNode = new Map<string, number>();
    for (const p of harness.placements) perNode.set(p.nodeId, (perNode.get(p.nodeId) ?? 0) + 1);
    expect(perNode.size).toBe(200);
  });

  it('packs jobs onto the fullest node that fits with the binpack policy', async () => {
    harness = new SchedulerHarness({ policy: 'binpack' });
    for (let i = 0; i < 4; i++) harness.addNode(linux(4));
    for (let i = 0; i < 6; i++) await harness.submit(newJob({}));
    await harness.settle();
    const perNode = [...new Set(harness.placements.map((p) => p.nodeId))];
    expect(harness.placements).toHaveLength(6);
    expect(perNode).toHaveLength(2); // four on one node, two on the next
  });

  it('ends a queued job whose deadline passed, with no node at all', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    harness = new SchedulerHarness();
    const late = await harness.submit(newJob({ deadline: new Date(Date.now() + 200).toISOString() }));
    await harness.settle();
    expect(harness.expired).toEqual([]);
    await vi.advanceTimersByTimeAsync(250);
    await harness.settle();
    expect(harness.expired).toEqual([late.job_id]);
    expect((await harness.store.get(late.job_id))?.state).toBe('TimedOut');
  });

  it('holds a requeued attempt back for the retry backoff, then places it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    harness = new SchedulerHarness({ retryBackoffMs: 1_000 });
    const node = harness.addNode(linux(1));
    const job = await harness.submit(newJob({}));
    await harness.settle();
    expect(harness.placements).toHaveLength(1);
    // The node rejects it: the coordinator requeues it and announces attempt 2.
    const requeued = await harness.store.requeue(job.job_id, 1, 'rejected', OWNER);
    node.jobs.delete(job.job_id);
    harness.report(node);
    harness.bus.publish({ kind: 'job', job_id: job.job_id, state: 'Queued', attempt: requeued!.attempt });
    await harness.settle();
    expect(harness.placements).toHaveLength(1);
    expect(harness.scheduler.waitingFor(requeued!)).toBe('retry_backoff');
    await vi.advanceTimersByTimeAsync(1_000);
    await harness.settle();
    expect(harness.placements.map((p) => p.job.attempt)).toEqual([1, 2]);
  });

  it('says why a queued job waits: no matching node, or matching nodes full', async () => {
    harness = new SchedulerHarness();
    const mac = await harness.submit(newJob({ selector: { runner_type: 'macos' } }));
    const big = await harness.submit(newJob({ selector: {}, job: { ...newJob().job, resource_requirements: { cpu_cores: 64, memory_mb: 1, disk_gb: 1 } } }));
    const first = await harness.submit(newJob({}));
    const second = await harness.submit(newJob({}));
    await harness.settle();
    expect(harness.scheduler.waitingFor(second)).toBe('no_matching_node');
    harness.addNode(linux(1));
    await harness.settle();
    expect(harness.placements.map((p) => p.job.job_id)).toEqual([first.job_id]);
    expect(harness.scheduler.waitingFor(mac)).toBe('no_matching_node');
    expect(harness.scheduler.waitingFor(big)).toBe('no_matching_node');
    expect(harness.scheduler.waitingFor(second)).toBe('matching_nodes_full');
    expect(harness.scheduler.waitingFor((await harness.store.get(first.job_id))!)).toBeUndefined();
  });

  it('drops a job cancelled while queued, and gives its turn to the next', async () => {
    harness = new SchedulerHarness();
    const cancelled = await harness.submit(newJob({ priority: 'High' }));
    const next = await harness.submit(newJob({}));
    const record = await harness.store.requestCancel(cancelled.job_id, OWNER);
    harness.bus.publish({ kind: 'job', job_id: cancelled.job_id, state: record!.state, attempt: record!.attempt });
    harness.addNode(linux(1));
    await harness.settle();
    expect(harness.placements.map((p) => p.job.job_id)).toEqual([next.job_id]);
  });
});
