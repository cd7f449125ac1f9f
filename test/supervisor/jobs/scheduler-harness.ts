// A scheduler over a real SQLite store and a real bus, with model nodes in place of sessions:
// an assignment is stored, then reported back as the node's actor would (its jobs and room),
// and a job ends when the test says so. What the tests observe is what the plane would do.
import { pino } from 'pino';
import { reservedFor, sumReserved, type Resources } from '../../../actors/node-capacity.js';
import { LocalBus } from '../../../supervisor/bus/local-bus.js';
import type { NodeCapacity } from '../../../supervisor/jobs/job-matcher.js';
import type { SchedulingPolicy } from '../../../supervisor/jobs/fleet-index.js';
import { Scheduler } from '../../../supervisor/jobs/scheduler.js';
import type { JobRecord, NewJob } from '../../../supervisor/store/job-store.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { OWNER, outcome } from '../store/job-store-contract.js';

export interface ModelNode {
  nodeId: string;
  runnerTypes: string[];
  supportedJobTypes: string[];
  tags: Record<string, string>;
  maxResources: Resources;
  accepting: boolean;
  /** Jobs it holds, by id, with what each reserves. */
  jobs: Map<string, Resources>;
}

export interface Placement {
  job: JobRecord;
  nodeId: string;
}

export interface HarnessOptions {
  policy?: SchedulingPolicy;
  retryBackoffMs?: number;
  now?: () => number;
  /** Called as each assignment is decided, before it is stored. */
  onAssign?: (job: JobRecord, node: ModelNode) => void;
}

export class SchedulerHarness {
  readonly store = SqliteJobStore.open(':memory:');
  readonly bus = new LocalBus((err) => {
    throw err;
  });
  readonly nodes = new Map<string, ModelNode>();
  readonly placements: Placement[] = [];
  readonly expired: string[] = [];
  readonly scheduler: Scheduler;

  constructor(options: HarnessOptions = {}) {
    this.scheduler = new Scheduler({
      store: this.store,
      bus: this.bus,
      logger: pino({ level: 'silent' }),
      policy: options.policy,
      retryBackoffMs: options.retryBackoffMs,
      now: options.now,
      assign: async (job, nodeId) => {
        const node = this.nodes.get(nodeId);
        if (node === undefined) return false;
        options.onAssign?.(job, node);
        if (!(await this.store.assign(job.job_id, job.attempt, nodeId, OWNER))) return false;
        this.placements.push({ job, nodeId });
        node.jobs.set(job.job_id, reservedFor(job.job.resource_requirements));
        this.report(node);
        return true;
      },
      expire: async (job) => {
        this.expired.push(job.job_id);
        await this.store.finish(job.job_id, job.attempt, 'TimedOut', 'deadline passed while queued', OWNER);
      },
    });
  }

  /** Submits as the plane does: stored, handed to the scheduler, announced. */
  async submit(job: NewJob): Promise<JobRecord> {
    const record = await this.store.submit(job, OWNER);
    this.scheduler.enqueue(record);
    this.bus.publish({ kind: 'job', job_id: record.job_id, state: record.state, attempt: record.attempt });
    return record;
  }

  /** Registers (or re-reports) a node. */
  addNode(node: Omit<ModelNode, 'jobs' | 'accepting'> & { accepting?: boolean }): ModelNode {
    const model: ModelNode = { accepting: true, ...node, jobs: new Map() };
    this.nodes.set(model.nodeId, model);
    this.report(model);
    return model;
  }

  /** The node's job ended (its result stored): the job is done and the node has room again. */
  async finish(jobId: string): Promise<void> {
    for (const node of this.nodes.values()) {
      if (!node.jobs.delete(jobId)) continue;
      const job = await this.store.get(jobId);
      if (job !== undefined) await this.store.storeResult(jobId, job.attempt, outcome(), NO_METRICS, OWNER);
      this.report(node);
    }
  }

  /** Reports what the node holds now, as the node's session does after each change. */
  report(node: ModelNode): void {
    this.scheduler.nodeReported(capacityOf(node), node);
  }

  running(): string[] {
    return [...this.nodes.values()].flatMap((n) => [...n.jobs.keys()]);
  }

  async settle(): Promise<void> {
    await this.scheduler.idle();
  }

  async close(): Promise<void> {
    this.scheduler.stop();
    await this.store.close();
  }
}

const NO_METRICS = { duration_ms: 0, cpu_time_ms: 0, memory_peak_mb: 0 };

export function capacityOf(node: ModelNode): NodeCapacity {
  return {
    nodeId: node.nodeId,
    runnerTypes: node.runnerTypes,
    supportedJobTypes: node.supportedJobTypes,
    tags: node.tags,
    maxResources: node.maxResources,
    used: sumReserved(node.jobs.values()),
    runningJobs: node.jobs.size,
    accepting: node.accepting,
  };
}
