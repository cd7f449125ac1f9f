// The scheduler's cost does not grow with the fleet: with 10,000 nodes registered and jobs
// waiting that no node can take (of one shape, and of a thousand shapes pinned to absent
// hosts, as a failover's jobs meant each for one node are), a registration, a heartbeat and a job end each touch a
// handful of node records (FleetIndex.ops, every node record read or written), and nothing
// reads the queue from the store.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { newJob } from '../store/job-store-contract.js';
import { SchedulerHarness, type ModelNode } from './scheduler-harness.js';

const FLEET = 10_000;
/** Generous: the claim is "a constant", the count is about ten. */
const MAX_OPS = 25;

let harness: SchedulerHarness;
let counter = 0;

function addNode(): ModelNode {
  counter++;
  return harness.addNode({
    nodeId: `00000000-0000-4000-8000-${String(counter).padStart(12, '0')}`,
    runnerTypes: ['docker'],
    supportedJobTypes: [],
    tags: { os: 'linux' },
    maxResources: { cpu_cores: 1, memory_mb: 4096, disk_gb: 100 },
  });
}

/** Index operations that `change` and the scheduling it causes cost. */
async function opsOf(change: () => void | Promise<void>): Promise<number> {
  await harness.settle();
  harness.scheduler.fleet.ops = 0;
  await change();
  await harness.settle();
  return harness.scheduler.fleet.ops;
}

beforeAll(async () => {
  harness = new SchedulerHarness();
  for (let i = 0; i < FLEET; i++) addNode();
  // One job per node, 50 more waiting, and 100 that no node can take.
  for (let i = 0; i < FLEET + 50; i++) await harness.submit(newJob({}));
  for (let i = 0; i < 100; i++) await harness.submit(newJob({ priority: 'Critical', selector: { runner_type: 'macos' } }));
  for (let i = 0; i < 1_000; i++) await harness.submit(newJob({ priority: 'Critical', selector: { runner_type: 'docker', tags: { host: `absent-${i}` } } }));
  await harness.settle();
  expect(harness.placements).toHaveLength(FLEET);
}, 120_000);

afterAll(async () => {
  await harness.close();
});

describe(`Scheduler cost with ${FLEET} nodes`, () => {
  it('a registration touches only the new node, which takes a waiting job', async () => {
    const before = harness.placements.length;
    let node: ModelNode | undefined;
    const ops = await opsOf(() => {
      node = addNode();
    });
    expect(harness.placements.slice(before).map((p) => p.nodeId)).toEqual([node!.nodeId]);
    expect(ops).toBeLessThanOrEqual(MAX_OPS);
  });

  it('a heartbeat that changes nothing, and one that turns a node busy and ready again, touch only that node', async () => {
    const node = harness.nodes.values().next().value!;
    expect(await opsOf(() => harness.report(node))).toBeLessThanOrEqual(1);
    const ops = await opsOf(() => {
      node.accepting = false;
      harness.report(node);
      node.accepting = true;
      harness.report(node);
    });
    expect(ops).toBeLessThanOrEqual(MAX_OPS);
  });

  it('a job end touches only that node, which takes the next waiting job', async () => {
    const reads = vi.spyOn(harness.store, 'queued');
    const ended = harness.placements[0]!;
    const before = harness.placements.length;
    const ops = await opsOf(() => harness.finish(ended.job.job_id));
    expect(harness.placements.slice(before).map((p) => p.nodeId)).toEqual([ended.nodeId]);
    expect(ops).toBeLessThanOrEqual(MAX_OPS);
    expect(reads).not.toHaveBeenCalled();
  });
});
