// Keeps the scheduler's fleet index up to date from one node session: it follows the node
// actor's snapshots (the coordinator tells the actor of every job assigned or ended) and
// reports the node whenever what it holds, its state or its connection changes. Each report
// reads only that node's actor and that node's holdings, so a registration, heartbeat or job
// end costs the same with ten nodes or ten thousand.
import type { Resources } from '../../actors/node-capacity.js';
import type { NodeState } from '../../actors/node-machine.js';
import { nodeStateOf } from '../../actors/node-machine.js';
import type { NodeSession } from '../nodes/node-session.js';
import type { JobCoordinator } from './job-coordinator.js';
import type { NodeCapacity } from './job-matcher.js';
import type { NodeBreaker } from './node-breaker.js';
import type { Scheduler } from './scheduler.js';

/** Reports computed from node actors, the cost test's counter. */
export const feedCounters = { reports: 0 };

/** Follows `session` into `scheduler.fleet` until its actor ends; returns a function that reports a closed connection. */
export function followNode(
  session: NodeSession,
  scheduler: Scheduler,
  holdings: Pick<JobCoordinator, 'heldBy' | 'reservedOn'>,
  breaker?: Pick<NodeBreaker, 'benched' | 'follow' | 'forget'>,
): () => void {
  let used: Resources | undefined;
  let running = -1;
  let state: NodeState | undefined;
  let closed = false;
  let benched = false;
  let nodeId: string | undefined;

  const report = (): void => {
    const snapshot = session.actor.getSnapshot();
    const context = snapshot.context;
    const now = nodeStateOf(snapshot);
    const isClosed = session.connection.isClosed;
    const registration = context.registration;
    if (now === 'dead' || registration === undefined) {
      if (nodeId !== undefined && state !== 'dead') {
        scheduler.nodeGone(nodeId, session);
        if (now === 'dead') breaker?.forget(nodeId);
      }
      state = now;
      return;
    }
    // The breaker tells this report when the node is benched or returns.
    if (nodeId === undefined) breaker?.follow(registration.nodeId, report);
    const held = holdings.heldBy(registration.nodeId);
    const reserved = holdings.reservedOn(registration.nodeId);
    const isBenched = breaker?.benched(registration.nodeId) !== undefined;
    if (now === state && isClosed === closed && held === running && isBenched === benched && sameResources(reserved, used)) return;
    used = reserved;
    running = held;
    state = now;
    closed = isClosed;
    benched = isBenched;
    nodeId = registration.nodeId;
    feedCounters.reports++;
    // Built field by field (no spread): a node reports on every job assigned and ended.
    const cap: NodeCapacity = {
      nodeId,
      runnerTypes: registration.capabilities.runner_types,
      supportedJobTypes: registration.capabilities.supported_job_types,
      tags: registration.info.tags,
      maxResources: context.max,
      used: reserved,
      runningJobs: held,
      // A node whose connection closed may still resume; until then it takes nothing. Nor does a benched one.
      accepting: now === 'ready' && !isClosed && !isBenched,
    };
    if (registration.wireFeatures !== undefined) cap.wireFeatures = registration.wireFeatures;
    scheduler.nodeReported(cap, session);
  };
  // The done snapshot comes through `next`; `error` must be there, or xstate rethrows the actor's error.
  session.actor.subscribe({ next: report, error: report });
  return report;
}

function sameResources(a: Resources, b: Resources | undefined): boolean {
  return b !== undefined && a.cpu_cores === b.cpu_cores && a.memory_mb === b.memory_mb && a.disk_gb === b.disk_gb;
}
