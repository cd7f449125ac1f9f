// The admin HTTP API's JSON shapes (PROTOCOL.md section 7), in one module: the routes answer
// with them and the CLI reads them, so neither imports the other's files.
import type { JobMetrics, JobOutcome } from '../../protocol/messages.js';
import type { NodeState } from '../../actors/node-machine.js';
import type { JobRecord, JobState } from '../store/job-store.js';

export type { NodeState };
export type { LogRecord, JobSelector, Revocation, TokenRecord } from '../store/job-store.js';

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
  /** Queued only: why it waits. */
  waiting_for?: WaitingFor;
}

/** Why a queued job waits: no connected node matches it, those that match are full, or it backs off after a withdrawn attempt. */
export type WaitingFor = 'no_matching_node' | 'matching_nodes_full' | 'retry_backoff';

/** `GET /v1/jobs/{id}`: the protocol's fields, plus what an operator needs to read a job. */
export type JobAnswer = JobView & {
  reason?: string;
  priority: JobRecord['priority'];
  job: JobRecord['job'];
  /** With every secret's value replaced by `***`: secrets reach only the node that runs the job. */
  execution_context: JobRecord['execution_context'];
};

/** `POST /v1/tokens` answer. */
export interface MintAnswer {
  token: string;
  jti: string;
  /** RFC 3339. */
  expires_at: string;
}

