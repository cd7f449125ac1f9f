// What the admin HTTP API (api-server.ts) needs from the running control plane.
// Keeping it an interface lets the API be tested against a real plane and read without it.
import type { AttemptRecord, JobListFilter, JobRecord, LogRecord, NewJob } from '../store/job-store.js';
import type { ClusterView, NodeDetail, NodeView, WaitingFor } from './wire-types.js';
import type { SubmitDefaults } from './job-request.js';
import type { FleetSource } from './fleet-events.js';

export interface PlaneApi extends Partial<FleetSource> {
  /** Stores the job as `Queued` and wakes the scheduler. */
  submitJob(job: NewJob): Promise<JobRecord>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Why a queued job waits (`waiting_for`); undefined when it is not queued. */
  waitingFor?(job: JobRecord): WaitingFor | undefined;
  /** Undefined when the job does not exist. */
  jobLogs(jobId: string, afterCursor?: number): Promise<LogRecord[] | undefined>;
  /**
   * Calls `wake` after each change of the job or new log chunk of it (the bus's `job` and `log`
   * events), so that a log follow reads the store only when there is something to read.
   * Returns the function that stops it.
   */
  watchJob(jobId: string, wake: () => void): () => void;
  /** Undefined when the job does not exist; otherwise the record after the request. */
  cancelJob(jobId: string): Promise<JobRecord | undefined>;
  /** This plane's nodes (a cluster replica's own). */
  listNodes(): NodeView[];
  /** The live feed's nodes (the visualizer): in a cluster, every replica's as last heard; undefined: listNodes. */
  fleetNodes?(): NodeView[];
  /** Every node of the cluster, each replica's; undefined: the plane has no peers (listNodes is all). */
  clusterNodes?(): Promise<NodeView[]>;
  /** A live node, or a dead one still remembered; undefined otherwise. */
  getNode(nodeId: string): NodeDetail | undefined;
  /** A node of any replica of the cluster; undefined: the plane has no peers (getNode is all). */
  findNode?(nodeId: string): Promise<NodeDetail | undefined>;
  /** False when no such node is connected (to any replica). */
  drainNode(nodeId: string): boolean | Promise<boolean>;
  /** Lifts a node's bench (the circuit breaker); false when it is not benched. */
  unbenchNode?(nodeId: string): boolean;
  /**
   * Asks a draining node to take jobs again (`Undrain`); it is `ready` once it reports so.
   * `not_connected` when no such node is connected, `not_draining` when it is not draining,
   * `not_supported` when its agent does not offer the `undrain` feature (it would not understand `Undrain`).
   */
  undrainNode(nodeId: string): UndrainOutcome | Promise<UndrainOutcome>;
  stats(): Promise<Record<string, number>>;
  /** The replicas (one, for the embedded plane) and the NATS connection: `GET /v1/cluster`. */
  cluster?(): ClusterView;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  /** Ready to take nodes and jobs (listeners up, store open, not shutting down). */
  isReady(): boolean;
  /** What is wrong with the job store while its writes fail (disk full, I/O error); undefined when they succeed. */
  storeFailure(): string | undefined;
  /** Default `max_attempts` and job timeout for submissions that give none, and the frame limit a job must fit. */
  readonly defaults: SubmitDefaults;
  /** Stores every job as `Queued` or none (one transaction) and wakes the scheduler; records in order. */
  submitJobs(jobs: readonly NewJob[]): Promise<JobRecord[]>;
  /** Up to `limit` jobs matching `filter`, newest first. */
  listJobs(filter: JobListFilter, limit: number): Promise<JobRecord[]>;
  /** Every attempt of a job, oldest first; undefined when the job does not exist. */
  jobAttempts(jobId: string): Promise<AttemptRecord[] | undefined>;
  /** Queues a job that ended (not Completed) again as its next attempt. */
  retryJob(jobId: string): Promise<RetryOutcome>;
}

export type UndrainOutcome = 'requested' | 'not_connected' | 'not_draining' | 'not_supported';

/** What `retryJob` did: queued the job again, found no such job, or found it not retryable (its record as it is). */
export type RetryOutcome =
  | { status: 'retried'; record: JobRecord }
  | { status: 'not_found' }
  | { status: 'refused'; record: JobRecord };
