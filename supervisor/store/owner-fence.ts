// The fencing rule every JobStore applies (cluster-design.md, "Fencing token"): a job keeps the
// owner token of its current attempt. A write for that attempt with a lower token is refused, a
// higher one takes the attempt over. Writes for another attempt, or for a job no node has at its
// current attempt (Queued), are not fenced: the compare-and-set on the attempt answers them.
import type { JobState, OwnerToken } from './job-store.js';

/** A job's owner token while no node has its current attempt (below every real token). */
export const NO_OWNER: OwnerToken = 0;

/** What a job write of `owner` for `attempt` does to the job's token, from what it read. */
export type Fence = 'pass' | 'take' | 'refuse';

export function fenceOf(job: { state: JobState; attempt: number; owner: OwnerToken }, attempt: number, owner: OwnerToken): Fence {
  if (job.attempt !== attempt || job.state === 'Queued') return 'pass';
  if (owner < job.owner) return 'refuse';
  return owner > job.owner ? 'take' : 'pass';
}
