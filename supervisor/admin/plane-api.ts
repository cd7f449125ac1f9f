// What the admin HTTP API (api-server.ts) needs from the running control plane.
// Keeping it an interface lets the API be tested against a real plane and read without it.
import type { JobRecord, LogRecord, NewJob } from '../store/job-store.js';
import type { NodeView } from './wire-types.js';
import type { SubmitDefaults } from './job-request.js';

export interface PlaneApi {
  /** Stores the job as `Queued` and wakes the scheduler. */
  submitJob(job: NewJob): Promise<JobRecord>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Undefined when the job does not exist. */
  jobLogs(jobId: string, afterCursor?: number): Promise<LogRecord[] | undefined>;
  /** Undefined when the job does not exist; otherwise the record after the request. */
  cancelJob(jobId: string): Promise<JobRecord | undefined>;
  listNodes(): NodeView[];
  /** False when no such node is connected. */
  drainNode(nodeId: string): boolean;
  stats(): Promise<Record<string, number>>;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  /** Ready to take nodes and jobs (listeners up, store open, not shutting down). */
  isReady(): boolean;
  /** Default `max_attempts` and job timeout for submissions that give none, and the frame limit a job must fit. */
  readonly defaults: SubmitDefaults;
}
