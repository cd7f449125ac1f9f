// The scheduler's matching rules as pure functions: which nodes may take a job, and which one should.
// No I/O and no clock, so the rules are tested by table and reused by every replica alike.
import { fits, reservedFor, type Resources } from '../../actors/node-capacity.js';
import type { JobRecord, JobSelector } from '../store/job-store.js';

/** What the scheduler knows of one connected node at the moment it places a job. */
export interface NodeCapacity {
  nodeId: string;
  /** `capabilities.runner_types` from `RegisterNode`. */
  runnerTypes: string[];
  /** `capabilities.supported_job_types` from `RegisterNode`. */
  supportedJobTypes: string[];
  /** `node_info.tags` from `RegisterNode`. */
  tags: Record<string, string>;
  /** The wire features its session turned on (PROTOCOL.md section 8); absent: none. */
  wireFeatures?: readonly string[];
  /** `capabilities.max_resources`: what the node offers in total. */
  maxResources: Resources;
  /** The sum of the resource requirements of the jobs the node holds now. */
  used: Resources;
  /** Jobs the node holds now (assigned or running). */
  runningJobs: number;
  /** False while the node is registering, draining, dead, or reported `Busy`. */
  accepting: boolean;
}

/** What is left on the node: its maximum minus what its jobs use. */
export function freeResources(node: NodeCapacity): Resources {
  return {
    cpu_cores: node.maxResources.cpu_cores - node.used.cpu_cores,
    memory_mb: node.maxResources.memory_mb - node.used.memory_mb,
    disk_gb: node.maxResources.disk_gb - node.used.disk_gb,
  };
}

/**
 * What a job needs of a node: its selector, and the wire features its session must have turned
 * on (a job that lists `job.artifacts` goes only to a node with `artifacts`, PROTOCOL.md section 8).
 */
export interface PlacementSelector extends JobSelector {
  wire_features?: readonly string[];
}

const NEEDS_ARTIFACTS: readonly string[] = ['artifacts'];

/** The job's selector plus the wire features it needs; the selector itself when it needs none. */
export function placementSelector(job: Pick<JobRecord, 'selector' | 'job'>): PlacementSelector {
  return (job.job.artifacts?.length ?? 0) > 0 ? { ...job.selector, wire_features: NEEDS_ARTIFACTS } : job.selector;
}

/** True when the node offers every term of the selector: its runner type, job type, each tag and each wire feature. */
export function selectorMatches(selector: PlacementSelector, node: Pick<NodeCapacity, 'runnerTypes' | 'supportedJobTypes' | 'tags' | 'wireFeatures'>): boolean {
  const { runner_type, job_type, tags } = selector;
  if (runner_type !== undefined && !node.runnerTypes.includes(runner_type)) return false;
  if (job_type !== undefined && !node.supportedJobTypes.includes(job_type)) return false;
  for (const feature of selector.wire_features ?? []) if (node.wireFeatures?.includes(feature) !== true) return false;
  for (const [key, value] of Object.entries(tags ?? {})) {
    if (!Object.hasOwn(node.tags, key) || node.tags[key] !== value) return false;
  }
  return true;
}

/** True when the node accepts work, satisfies the job's selector, and has room for its resources. */
export function nodeMatches(job: JobRecord, node: NodeCapacity): boolean {
  return (
    node.accepting &&
    selectorMatches(placementSelector(job), node) &&
    fits(reservedFor(job.job.resource_requirements), node.maxResources, node.used)
  );
}

/**
 * The node to run `job` on, or undefined when none matches. Spreads load: the node with the
 * fewest running jobs wins, then the one with the most free CPU; ties keep the iteration order.
 */
export function pickNode(job: JobRecord, nodes: Iterable<NodeCapacity>): NodeCapacity | undefined {
  let best: NodeCapacity | undefined;
  let bestFreeCpu = 0;
  for (const node of nodes) {
    if (!nodeMatches(job, node)) continue;
    const freeCpu = freeResources(node).cpu_cores;
    const better =
      best === undefined ||
      node.runningJobs < best.runningJobs ||
      (node.runningJobs === best.runningJobs && freeCpu > bestFreeCpu);
    if (better) {
      best = node;
      bestFreeCpu = freeCpu;
    }
  }
  return best;
}
