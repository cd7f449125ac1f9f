// What a (re)registered node keeps of the jobs the plane holds for it (PROTOCOL.md 4.5, 4.6):
// the ones it lists stay placed on it; the others are withdrawn; a job it still runs whose
// attempt the plane took back while it was away is cancelled on it.
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import type { NodeSession } from './node-session.js';

export interface Resumed {
  /** Jobs the node says it still has (running, or finished with a result not yet acked). */
  keepJobs: ReadonlySet<string>;
  /** Of those, the ones it says are still running. */
  runningJobs: readonly string[];
}

/** Adopts the node's jobs; returns how many it keeps. Its actor reads them from the coordinator. */
export function adoptJobs(coordinator: JobCoordinator, session: NodeSession, nodeId: string, resumed: Resumed): number {
  const kept = coordinator.adopt(nodeId, resumed.keepJobs);
  coordinator.cancelStale(session, nodeId, resumed.runningJobs).catch((err: unknown) => {
    session.logger.error({ err, node_id: nodeId }, 'cancelling stale attempts failed');
  });
  return Object.keys(kept).length;
}
