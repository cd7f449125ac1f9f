// Property: whatever mix of node offers, selectors, resources and priorities, and whatever sits
// ahead in the queue, (1) once the scheduler is idle no queued job could be taken by a node
// that has room for it, so every job some node can take is placed once that node has room;
// (2) when a job is placed on a node, no job ahead of it (priority, then FIFO) that the node
// could take instead is still waiting. Jobs end in random order until the queue is drained.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { fits, reservedFor, sumReserved, type Resources } from '../../../actors/node-capacity.js';
import type { Priority } from '../../../protocol/messages.js';
import { selectorMatches } from '../../../supervisor/jobs/job-matcher.js';
import { ahead } from '../../../supervisor/jobs/queue-index.js';
import type { JobRecord, JobSelector } from '../../../supervisor/store/job-store.js';
import { newJob } from '../store/job-store-contract.js';
import { SchedulerHarness, type ModelNode } from './scheduler-harness.js';

interface NodeSpec {
  runnerTypes: string[];
  os: string;
  cpu: number;
  memory: number;
  accepting: boolean;
}

interface JobSpecArb {
  selector: JobSelector;
  cpu: number;
  memory: number;
  priority: Priority;
}

const nodeArb: fc.Arbitrary<NodeSpec> = fc.record({
  runnerTypes: fc.subarray(['docker', 'shell'], { minLength: 1 }),
  os: fc.constantFrom('linux', 'macos'),
  cpu: fc.integer({ min: 1, max: 4 }),
  memory: fc.constantFrom(1024, 4096, 8192),
  accepting: fc.constantFrom(true, true, true, false),
});

const jobArb: fc.Arbitrary<JobSpecArb> = fc.record({
  selector: fc.record(
    { runner_type: fc.constantFrom('docker', 'shell', 'vm'), tags: fc.constantFrom({ os: 'linux' }, { os: 'macos' }, { os: 'windows' }) },
    { requiredKeys: [] },
  ),
  cpu: fc.integer({ min: 0, max: 3 }),
  memory: fc.constantFrom(0, 512, 4096, 16_384),
  priority: fc.constantFrom<Priority>('Critical', 'High', 'Normal', 'Low'),
});

let harness: SchedulerHarness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe('Scheduler, by property', () => {
  it('starves no job a node can take, and keeps priority then FIFO among the jobs a node can take', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(nodeArb, { minLength: 1, maxLength: 6 }),
        fc.array(jobArb, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 0, max: 40 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        async (nodeSpecs, jobSpecs, nodesAfter, finishPicks) => {
          await harness?.close();
          const queued = new Map<string, JobRecord>();
          const held = new Map<string, Map<string, Resources>>();
          const violations: string[] = [];
          harness = new SchedulerHarness({
            onAssign: (job, node) => {
              const room = sumReserved(held.get(node.nodeId)!.values());
              queued.delete(job.job_id);
              for (const other of queued.values()) {
                if (ahead(other, job) && canTake(node, other, room)) violations.push(`${other.priority} #${other.seq} waits while ${job.priority} #${job.seq} goes to ${node.nodeId}`);
              }
              held.get(node.nodeId)!.set(job.job_id, reservedFor(job.job.resource_requirements));
            },
          });
          const h = harness;
          // Some jobs are queued before any node registers, the rest after.
          const addNodes = (): void => {
            nodeSpecs.forEach((spec, i) => {
              const nodeId = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
              held.set(nodeId, new Map());
              h.addNode({
                nodeId,
                runnerTypes: spec.runnerTypes,
                supportedJobTypes: [],
                tags: { os: spec.os },
                maxResources: { cpu_cores: spec.cpu, memory_mb: spec.memory, disk_gb: 100 },
                accepting: spec.accepting,
              });
            });
          };
          for (const [i, spec] of jobSpecs.entries()) {
            if (i === nodesAfter) addNodes();
            const record = await h.submit(
              newJob({
                priority: spec.priority,
                selector: spec.selector,
                job: { ...newJob().job, resource_requirements: { cpu_cores: spec.cpu, memory_mb: spec.memory, disk_gb: 1 } },
              }),
            );
            if (!h.placements.some((p) => p.job.job_id === record.job_id)) queued.set(record.job_id, record);
          }
          if (nodesAfter >= jobSpecs.length) addNodes();

          const picks = [...finishPicks];
          for (;;) {
            await h.settle();
            expect(violations).toEqual([]);
            for (const job of queued.values()) {
              for (const node of h.nodes.values()) {
                const room = sumReserved(held.get(node.nodeId)!.values());
                expect(node.accepting && canTake(node, job, room), `job #${job.seq} waits though ${node.nodeId} could take it`).toBe(false);
              }
            }
            const running = h.running();
            if (running.length === 0) break;
            const jobId = running[(picks.shift() ?? 0) % running.length]!;
            for (const jobs of held.values()) jobs.delete(jobId);
            await h.finish(jobId);
          }
          // Drained: every job an accepting node could take has run.
          for (const job of queued.values()) {
            for (const node of h.nodes.values()) expect(node.accepting && canTake(node, job, NONE)).toBe(false);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

const NONE: Resources = { cpu_cores: 0, memory_mb: 0, disk_gb: 0 };

function canTake(node: ModelNode, job: JobRecord, used: Resources): boolean {
  return selectorMatches(job.selector, node) && fits(reservedFor(job.job.resource_requirements), node.maxResources, used);
}
