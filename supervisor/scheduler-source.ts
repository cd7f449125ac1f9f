// What the scheduler reads of the plane and asks of it (scheduler.ts `SchedulerOptions`):
// the nodes that may take a job now, with what they hold; placing a job on a node's session;
// ending a queued job whose deadline passed.
import { sumReserved } from '../actors/node-capacity.js';
import type { Bus } from './bus/bus.js';
import type { JobCoordinator } from './jobs/job-coordinator.js';
import type { NodeCapacity } from './jobs/job-matcher.js';
import type { SchedulerOptions } from './jobs/scheduler.js';
import type { NodeRegistry } from './nodes/node-registry.js';
import type { JobStore, OwnerToken } from './store/job-store.js';

export function schedulerSource(
  registry: NodeRegistry,
  coordinator: JobCoordinator,
  store: JobStore,
  bus: Bus,
  owner: OwnerToken,
): Pick<SchedulerOptions, 'capacities' | 'assign' | 'expire'> {
  return {
    capacities: () => capacities(registry, coordinator),
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

/** Every ready node, with what it offers and what the jobs placed on it hold. */
export function capacities(registry: NodeRegistry, coordinator: JobCoordinator): NodeCapacity[] {
  const nodes: NodeCapacity[] = [];
  for (const session of registry.sessionsList()) {
    const context = session.actor.getSnapshot().context;
    const registration = context.registration;
    // Ready is the actor's decision: a node whose connection dropped is not ready.
    if (registration === undefined || session.state !== 'ready') continue;
    const held = coordinator.jobsOf(registration.nodeId);
    nodes.push({
      nodeId: registration.nodeId,
      runnerTypes: registration.capabilities.runner_types,
      supportedJobTypes: registration.capabilities.supported_job_types,
      tags: registration.info.tags,
      maxResources: context.max,
      used: sumReserved(held.map((p) => p.slot.reserved)),
      runningJobs: held.length,
      accepting: true,
    });
  }
  return nodes;
}
