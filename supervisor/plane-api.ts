// What the admin HTTP API (admin-api.ts) needs from the running control plane.
// Keeping it an interface lets the API be tested against a real plane and read without it.
import type { JobMetrics, JobOutcome } from '../protocol/messages.js';
import type { JobRecord, JobState, LogRecord, NewJob } from './job-store.js';

export type NodeState = 'registering' | 'ready' | 'busy' | 'draining' | 'dead';

/** `GET /v1/nodes` entry (PROTOCOL.md section 7). */
export interface NodeView {
  node_id: string;
  hostname: string;
  state: NodeState;
  /** The replica that holds the node's connection (`control_plane_id`). */
  owner: string;
  running_jobs: string[];
  /** RFC 3339 time of the last frame from the node. */
  last_heartbeat: string;
}

/** `GET /v1/jobs/{id}` answer. */
export interface JobView {
  job_id: string;
  state: JobState;
  attempt: number;
  node_id?: string;
  result?: JobOutcome;
  metrics?: JobMetrics;
}

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
  /** Default `max_attempts` and job timeout for submissions that give none. */
  readonly defaults: { maxAttempts: number; jobTimeoutMs: number };
}
