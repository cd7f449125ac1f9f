// Keeps the scheduler's fleet index up to date from one node session: it follows the node
// actor's snapshots and reports the node whenever what it holds, its state or its
// connection changes. Each report reads only that node's own actor, so a registration,
// heartbeat or job end costs the same with ten nodes or ten thousand.
import { reservedBy, type JobSlot, type NodeState } from '../../actors/node-machine.js';
import { nodeStateOf, type NodeSession } from '../nodes/node-session.js';
import type { Scheduler } from './scheduler.js';

/** Reports computed from node actors, the cost test's counter. */
export const feedCounters = { reports: 0 };

/** Follows `session` into `scheduler.fleet` until its actor ends; returns a function that reports a closed connection. */
export function followNode(session: NodeSession, scheduler: Scheduler): () => void {
  let jobs: Record<string, JobSlot> | undefined;
  let state: NodeState | undefined;
  let closed = false;
  let nodeId: string | undefined;

  const report = (): void => {
    const snapshot = session.actor.getSnapshot();
    const context = snapshot.context;
    const now = nodeStateOf(session.actor);
    const isClosed = session.connection.isClosed;
    if (context.jobs === jobs && now === state && isClosed === closed) return;
    jobs = context.jobs;
    state = now;
    closed = isClosed;
    const registration = context.registration;
    if (now === 'dead' || registration === undefined) {
      if (nodeId !== undefined) scheduler.nodeGone(nodeId, session);
      return;
    }
    nodeId = registration.nodeId;
    feedCounters.reports++;
    scheduler.nodeReported(
      {
        nodeId,
        runnerTypes: registration.capabilities.runner_types,
        supportedJobTypes: registration.capabilities.supported_job_types,
        tags: registration.info.tags,
        maxResources: context.max,
        used: reservedBy(context.jobs),
        runningJobs: Object.keys(context.jobs).length,
        // A node whose connection closed may still resume; until then it takes nothing.
        accepting: now === 'ready' && !isClosed,
      },
      session,
    );
  };
  // The done snapshot comes through `next`; `error` must be there, or xstate rethrows the actor's error.
  session.actor.subscribe({ next: report, error: report });
  return report;
}
