// How much room a node has for jobs: shared by the node actor (ready vs busy)
// and the scheduler (where a job fits), so the two never disagree.
import type { ResourceRequirements } from '../protocol/messages.js';

export interface Resources {
  cpu_cores: number;
  memory_mb: number;
  disk_gb: number;
}

export const NO_RESOURCES: Resources = { cpu_cores: 0, memory_mb: 0, disk_gb: 0 };

/** One job attempt a node holds, with what it reserves. */
export interface JobSlot {
  attempt: number;
  reserved: Resources;
}

/**
 * The jobs nodes hold, as their one owner (the supervisor's job coordinator) keeps them:
 * the node actor reads it to decide ready or busy, and keeps no copy.
 */
export interface JobHoldings {
  /** What the jobs placed on `nodeId` reserve now. */
  reservedOn(nodeId: string): Resources;
}

/**
 * What a job takes from a node. A job that asks for no CPU still occupies one core's
 * worth of slot, as CI runners run one job per core unless told otherwise: without this
 * a node would take an unbounded number of jobs that declare no requirements.
 */
export function reservedFor(req: ResourceRequirements): Resources {
  return { cpu_cores: req.cpu_cores > 0 ? req.cpu_cores : 1, memory_mb: req.memory_mb, disk_gb: req.disk_gb };
}

export function sumReserved(reservations: Iterable<Resources>): Resources {
  const used = { ...NO_RESOURCES };
  for (const r of reservations) {
    used.cpu_cores += r.cpu_cores;
    used.memory_mb += r.memory_mb;
    used.disk_gb += r.disk_gb;
  }
  return used;
}

// Fractions of a core add up with float error (0.3 - 0.1); a hair of slack keeps an exact fit a fit.
const EPSILON = 1e-9;

/** True when `need` fits into `max` minus `used`. A node that reports no CPU still has one slot. */
export function fits(need: Resources, max: Resources, used: Resources): boolean {
  return (
    used.cpu_cores + need.cpu_cores <= Math.max(max.cpu_cores, 1) + EPSILON &&
    used.memory_mb + need.memory_mb <= max.memory_mb + EPSILON &&
    used.disk_gb + need.disk_gb <= max.disk_gb + EPSILON
  );
}

/** Room for at least the smallest job (one core slot, no memory or disk). */
export function hasRoom(max: Resources, used: Resources): boolean {
  return fits(reservedFor(NO_RESOURCES), max, used);
}
