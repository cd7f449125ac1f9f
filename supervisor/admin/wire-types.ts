// The admin HTTP API's JSON shapes (PROTOCOL.md section 7), in one module: the routes answer
// with them and the CLI reads them, so neither imports the other's files.
import type { Capabilities, JobMetrics, JobOutcome } from '../../protocol/messages.js';
import type { NodeState } from '../../actors/node-machine.js';
import type { JobRecord, JobState } from '../store/job-store.js';

export type { NodeState };
export type { LogRecord, JobSelector } from '../store/job-store.js';
export type { Revocation, TokenRecord } from '../store/token-store.js';

/** `GET /v1/nodes` entry (PROTOCOL.md section 7). */
export interface NodeView {
  node_id: string;
  hostname: string;
  /** The node's `name` tag (`muster agent --name`), when it has one. */
  name?: string;
  state: NodeState;
  /**
   * False from the moment the node's connection drops until it resumes on a new one (then
   * true again) or its heartbeat window ends (then `dead`); a disconnected node is `busy`:
   * it takes no job.
   */
  connected: boolean;
  /** The replica that holds the node's connection (`control_plane_id`). */
  owner: string;
  running_jobs: string[];
  /** RFC 3339 time of the last frame from the node. */
  last_heartbeat: string;
  tags: Record<string, string>;
  /** URL scheme of the listener the node came in on: `tcp`, `tls`, `unix`, `ws`, `wss`, `grpc`, `grpcs`. */
  transport: string;
  /** The protocol version of the node's session (`RegisterAck.protocol_version`). */
  protocol_version: number;
  /** RFC 3339: while benched by the circuit breaker, the node takes no job until then. */
  benched_until?: string;
  /** The failure that benched it. */
  benched_reason?: string;
}

/** One replica of `GET /v1/cluster`. */
export interface ReplicaView {
  control_plane_id: string;
  /** Nodes this replica serves now. */
  nodes: number;
  /** RFC 3339: when the replica started. */
  started_at: string;
  /** RFC 3339: its last lease renewal; null for the embedded plane, which holds no lease. */
  last_renewal: string | null;
  /** Muster's version it runs ('' when its lease does not say). */
  version: string;
  /**
   * The cluster format it reads and writes (supervisor/cluster/cluster-format.ts): replicas of
   * different formats misread each other. Null for the embedded plane, and for a replica of a
   * build from before cluster formats.
   */
  cluster_format: number | null;
}

/** `GET /v1/cluster`: the replicas and how they reach each other. */
export interface ClusterView {
  /** `embedded`: one plane, no NATS; `cluster`: replicas sharing a fleet over NATS. */
  mode: 'embedded' | 'cluster';
  replicas: ReplicaView[];
  /** The NATS connection's state; null for the embedded plane. */
  nats: { state: string; server?: string; reconnects: number } | null;
}

/** One entry of `GET /v1/nodes/{id}` `recent_messages`; `at` RFC 3339. */
export interface RecentMessage {
  direction: 'in' | 'out';
  type: string;
  at: string;
  /** A message from the node: its `id`, when it has one. */
  id?: string;
  /** A message to the node: the id of the message it answers, when it answers one. */
  reply_to?: string;
  /** The frame's bytes; 0 for a message that came or went inside a `Batch` frame with others (the frame's size is the first one's). */
  bytes: number;
}

/** `GET /v1/nodes/{id}`: the list entry plus what the node registered with and its last state changes. */
export type NodeDetail = NodeView & {
  capabilities?: Capabilities;
  /** Oldest first, RFC 3339 `at`; only while the node is connected. */
  transitions?: Array<{ from: NodeState; to: NodeState; at: string; event: string }>;
  /** Its last messages in and out (types, ids, times, sizes; never their data), oldest first; only while the node is connected. */
  recent_messages?: RecentMessage[];
};


/** `GET /v1/jobs/{id}` answer. */
export interface JobView {
  job_id: string;
  state: JobState;
  attempt: number;
  node_id?: string;
  result?: JobOutcome;
  metrics?: JobMetrics;
}

/** Why a queued job waits: no connected node matches it, those that match are full, or it backs off after a withdrawn attempt. */
export type WaitingFor = 'no_matching_node' | 'matching_nodes_full' | 'retry_backoff';

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

/** `GET /v1/jobs` answer: a page, newest first; `next_cursor` asks for the next one. */
export interface JobListAnswer {
  jobs: JobAnswer[];
  next_cursor?: string;
}

/** `POST /v1/jobs` answer for a batch: the ids in the order of the jobs sent. */
export interface BatchSubmitAnswer {
  job_ids: string[];
}

/** One entry of `GET /v1/jobs/{id}/attempts`. */
export interface AttemptAnswer {
  attempt: number;
  node_id: string;
  assigned_at: string;
  accepted_at?: string;
  ended_at?: string;
  outcome?: string;
  reason?: string;
}

/** `POST /v1/jobs/{id}/retry` and `.../cancel` answers. */
export interface JobMoveAnswer {
  job_id: string;
  state: JobState;
  attempt: number;
}

/** `POST /v1/tokens` answer. */
export interface MintAnswer {
  token: string;
  jti: string;
  /** RFC 3339. */
  expires_at: string;
}

