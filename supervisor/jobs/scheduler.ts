// Places queued jobs on nodes: Critical > High > Normal > Low, FIFO within a priority
// (the store's `queued()` order), on a node whose runner types, job types, tags and free
// resources match (job-matcher.ts). One pass runs at a time; wakes during a pass
// coalesce into one more pass, so a burst of events costs one scan.
//
// With a backlog and a busy fleet, most wakes find no node with room: such a pass reads
// nothing from the store, and a pass stops as soon as the last node with room is full.
// Only the periodic pass reads the queue regardless, to end queued jobs whose deadline passed.
import type { Logger } from 'pino';
import { hasRoom, reservedFor, sumReserved } from '../../actors/node-capacity.js';
import type { JobRecord, JobStore } from '../store/job-store.js';
import { pickNode, type NodeCapacity } from './job-matcher.js';

/** Queued jobs looked at per pass; the rest wait for the next one. */
const PASS_LIMIT = 1000;
/** A pass also runs this often, so that deadlines of queued jobs are enforced without events. */
const PERIODIC_PASS_MS = 1000;

export interface SchedulerOptions {
  store: JobStore;
  logger: Logger;
  /** Every node that may take jobs now, with what it holds. */
  capacities(): NodeCapacity[];
  /** Assigns the job to the node; false when it lost a race (then it is skipped). */
  assign(job: JobRecord, nodeId: string): Promise<boolean>;
  /** A queued job whose deadline passed. */
  expire(job: JobRecord): Promise<void>;
}

export class Scheduler {
  private running = false;
  private again = false;
  private stopped = false;
  /** Set by the periodic timer: the next pass reads the queue even with no node free, for deadlines. */
  private deadlinesDue = true;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: SchedulerOptions) {
    this.timer = setInterval(() => {
      this.deadlinesDue = true;
      this.wake();
    }, PERIODIC_PASS_MS);
    this.timer.unref();
  }

  /** Asks for a pass soon; cheap to call often. */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    setImmediate(() => void this.loop());
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.pass();
      } while (this.again && !this.stopped);
    } catch (err) {
      this.o.logger.error({ err }, 'scheduling pass failed');
    } finally {
      this.running = false;
    }
  }

  private async pass(): Promise<void> {
    const checkDeadlines = this.deadlinesDue;
    this.deadlinesDue = false;
    const nodes = this.o.capacities().filter(hasAnyRoom);
    if (nodes.length === 0 && !checkDeadlines) return;
    const queued = await this.o.store.queued(PASS_LIMIT);
    const now = Date.now();
    for (const job of queued) {
      if (this.stopped) return;
      if (job.deadline !== undefined && Date.parse(job.deadline) <= now) {
        await this.o.expire(job);
        continue;
      }
      if (nodes.length === 0) {
        if (checkDeadlines) continue;
        return;
      }
      const node = pickNode(job, nodes);
      if (node === undefined || !(await this.o.assign(job, node.nodeId))) continue;
      take(node, job);
      if (!hasAnyRoom(node)) nodes.splice(nodes.indexOf(node), 1);
    }
  }
}

function hasAnyRoom(node: NodeCapacity): boolean {
  return hasRoom(node.maxResources, node.used);
}

/** Counts the job against the node for the rest of this pass. */
function take(node: NodeCapacity, job: JobRecord): void {
  node.used = sumReserved([node.used, reservedFor(job.job.resource_requirements)]);
  node.runningJobs++;
}
