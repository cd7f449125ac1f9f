// The admin HTTP API's JSON shapes (PROTOCOL.md section 7), in one module: the routes answer
// with them and the CLI reads them, so neither imports the other's files.
import type { Capabilities, JobMetrics, JobOutcome } from '../../protocol/messages.js';
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
  /** The name the node was started with (`muster agent --name`), when it gave one. */
  name?: string;
  tags: Record<string, string>;
  /** URL scheme of the listener the node came in on: `tcp`, `tls`, `unix`, `ws`, `wss`, `grpc`, `grpcs`. */
  transport: string;
  /** The protocol version of the node's session (`RegisterAck.protocol_version`). */
  protocol_version: number;
}

/** `GET /v1/nodes/{id}`: the list entry plus what the node registered with and its last state changes. */
export type NodeDetail = NodeView & {
  capabilities?: Capabilities;
  /** Oldest first, RFC 3339 `at`; only while the node is connected. */
  transitions?: Array<{ from: NodeState; to: NodeState; at: string }>;
};

/** Why a queued job is not running yet (the scheduler's last verdict), when the plane says. */
export type WaitingFor =
  | 'no_matching_node'
  | 'matching_nodes_full'
  | 'retry_backoff'
  | { reason: 'no_matching_node' | 'matching_nodes_full' | 'retry_backoff'; matching_nodes?: number; until?: string };

/** `GET /v1/jobs/{id}` answer. */
export interface JobView {
  job_id: string;
  state: JobState;
  attempt: number;
  node_id?: string;
  result?: JobOutcome;
  metrics?: JobMetrics;
}

/** `GET /v1/jobs/{id}`: the protocol's fields, plus what an operator needs to read a job. */
export type JobAnswer = JobView & {
  reason?: string;
  /** Queued jobs only, when the plane knows why the job waits. */
  waiting_for?: WaitingFor;
  selector?: JobRecord['selector'];
  max_attempts?: number;
  /** RFC 3339: submitted; the current attempt assigned; accepted by its node. */
  created_at?: string;
  assigned_at?: string;
  started_at?: string;
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

