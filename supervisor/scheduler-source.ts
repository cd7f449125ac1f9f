// What the scheduler asks of the plane (scheduler.ts `SchedulerOptions`): placing a job on a
// node's session, and ending a queued job whose deadline passed. What it knows of the nodes
// it is told by each session (jobs/fleet-feed.ts), so no pass reads the whole fleet.
import type { Bus } from './bus/bus.js';
import type { JobCoordinator } from './jobs/job-coordinator.js';
import type { SchedulerOptions } from './jobs/scheduler.js';
import type { NodeRegistry } from './nodes/node-registry.js';
import type { JobStore, OwnerToken } from './store/job-store.js';

export function schedulerSource(
  registry: NodeRegistry,
  coordinator: JobCoordinator,
  store: JobStore,
  bus: Bus,
  owner: OwnerToken,
): Pick<SchedulerOptions, 'assign' | 'expire'> {
  return {
    assign: async (job, nodeId) => {
      const session = registry.get(nodeId);
      return session !== undefined && (await coordinator.assign(job, session, nodeId));
    },
    expire: async (job) => {
      if (await store.finish(job.job_id, job.attempt, 'TimedOut', 'deadline passed while queued', owner)) {
        bus.publish({ kind: 'job', job_id: job.job_id, state: 'TimedOut', attempt: job.attempt });
      }
    },
  };
}
