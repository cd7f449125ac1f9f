// Every message of PROTOCOL.md section 3 as a TypeBox schema, and its static type.
// The schemas are the one source: validators are compiled from them (validator.ts),
// and the TypeScript types are derived from them, so the two never drift apart.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
/** RFC 3339 date-time; senders write UTC (`Z`), receivers also take an offset. */
const Timestamp = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$',
});
const Count = Type.Integer({ minimum: 0 });
const Amount = Type.Number({ minimum: 0 });
const Attempt = Type.Integer({ minimum: 1 });
const StringMap = Type.Record(Type.String(), Type.String());

export const Duration = Type.Object({ secs: Count, nanos: Type.Integer({ minimum: 0, maximum: 999_999_999 }) });
export type Duration = Static<typeof Duration>;

export const Priority = Type.Union([Type.Literal('Low'), Type.Literal('Normal'), Type.Literal('High'), Type.Literal('Critical')]);
export type Priority = Static<typeof Priority>;

export const LogStream = Type.Union([Type.Literal('stdout'), Type.Literal('stderr')]);
export type LogStream = Static<typeof LogStream>;

export const ResultStatus = Type.Union([
  Type.Literal('Completed'),
  Type.Literal('Failed'),
  Type.Literal('Cancelled'),
  Type.Literal('TimedOut'),
]);
export type ResultStatus = Static<typeof ResultStatus>;

export const NodeStatus = Type.Union([Type.Literal('Ready'), Type.Literal('Busy'), Type.Literal('Draining')]);
export type NodeStatus = Static<typeof NodeStatus>;

export const NodeInfo = Type.Object({
  hostname: Type.String({ minLength: 1, maxLength: 255 }),
  ip_address: Type.String(),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  node_type: Type.String(),
  version: Type.String(),
  platform: Type.String(),
  architecture: Type.String(),
  tags: StringMap,
});
export type NodeInfo = Static<typeof NodeInfo>;

export const MaxResources = Type.Object({
  cpu_cores: Amount,
  memory_mb: Amount,
  disk_gb: Amount,
  network_mbps: Amount,
});

export const Capabilities = Type.Object({
  runner_types: Type.Array(Type.String()),
  max_resources: MaxResources,
  supported_job_types: Type.Array(Type.String()),
  features: Type.Array(Type.String()),
  protocols: Type.Array(Type.String()),
});
export type Capabilities = Static<typeof Capabilities>;

export const Resume = Type.Object({
  node_id: Uuid,
  running_jobs: Type.Array(Uuid),
  unacked_results: Type.Array(Uuid),
});
export type Resume = Static<typeof Resume>;

export const ResourceRequirements = Type.Object({ cpu_cores: Amount, memory_mb: Amount, disk_gb: Amount });
export type ResourceRequirements = Static<typeof ResourceRequirements>;

export const JobSpec = Type.Object({
  name: Type.String(),
  image: Type.String(),
  command: Type.Array(Type.String(), { minItems: 1 }),
  environment: StringMap,
  timeout: Duration,
  resource_requirements: ResourceRequirements,
});
export type JobSpec = Static<typeof JobSpec>;

export const ExecutionContext = Type.Object({
  workspace_id: Type.String(),
  pipeline_id: Type.String(),
  build_number: Count,
  git_ref: Type.String(),
  variables: StringMap,
  secrets: StringMap,
});
export type ExecutionContext = Static<typeof ExecutionContext>;

export const JobOutcome = Type.Object({
  status: ResultStatus,
  exit_code: Type.Union([Type.Integer(), Type.Null()]),
  stdout: Type.String(),
  stderr: Type.String(),
  artifacts: Type.Array(Type.String()),
  started_at: Timestamp,
  completed_at: Timestamp,
});
export type JobOutcome = Static<typeof JobOutcome>;

export const JobMetrics = Type.Object({ duration_ms: Amount, cpu_time_ms: Amount, memory_peak_mb: Amount });
export type JobMetrics = Static<typeof JobMetrics>;

/** `data` schemas by message type. Node-to-plane first, then plane-to-node. */
export const MESSAGE_SCHEMAS = {
  RegisterNode: Type.Object({
    node_info: NodeInfo,
    capabilities: Capabilities,
    auth_token: Type.String({ minLength: 1 }),
    resume: Type.Optional(Resume),
  }),
  Heartbeat: Type.Object({
    node_id: Uuid,
    status: NodeStatus,
    resources: Type.Object({ cpu_cores: Amount, memory_mb: Amount, available_cpu: Amount, available_memory_mb: Amount }),
    metrics: Type.Object({
      cpu_usage_percent: Amount,
      memory_usage_percent: Amount,
      active_jobs: Count,
      completed_jobs: Count,
      failed_jobs: Count,
    }),
    timestamp: Timestamp,
  }),
  JobAccepted: Type.Object({ job_id: Uuid, attempt: Attempt }),
  JobRejected: Type.Object({ job_id: Uuid, attempt: Attempt, reason: Type.String() }),
  LogChunk: Type.Object({ job_id: Uuid, attempt: Attempt, stream: LogStream, seq: Count, data: Type.String() }),
  JobResult: Type.Object({ job_id: Uuid, attempt: Attempt, node_id: Uuid, result: JobOutcome, metrics: JobMetrics }),
  Deregister: Type.Object({ node_id: Uuid, reason: Type.String() }),

  RegisterAck: Type.Object({
    node_id: Uuid,
    session_token: Type.String(),
    session_expires_at: Timestamp,
    heartbeat_interval_ms: Type.Integer({ minimum: 1 }),
    protocol_version: Type.Literal(1),
    control_plane_id: Type.String(),
    resumed: Type.Boolean(),
  }),
  JobAssignment: Type.Object({
    job_id: Uuid,
    attempt: Attempt,
    job: JobSpec,
    execution_context: ExecutionContext,
    deadline: Type.Optional(Timestamp),
    priority: Priority,
  }),
  JobResultAck: Type.Object({ job_id: Uuid, attempt: Attempt }),
  CancelJob: Type.Object({ job_id: Uuid, attempt: Attempt, reason: Type.String() }),
  Drain: Type.Object({ deadline: Type.Optional(Timestamp) }),
  /** Takes back a `Drain`: the node may accept jobs again (a node that does not know it ignores it). */
  Undrain: Type.Object({}),
  Shutdown: Type.Object({ reason: Type.String(), grace_period_ms: Count }),
  TokenRefresh: Type.Object({ session_token: Type.String(), session_expires_at: Timestamp }),
  Configure: Type.Object({ heartbeat_interval_ms: Type.Integer({ minimum: 1 }) }),
  LogResync: Type.Object({ job_id: Uuid, attempt: Attempt, stream: LogStream, next_seq: Count }),
  Error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    fatal: Type.Boolean(),
    field: Type.Optional(Type.String()),
  }),
} satisfies Record<string, TSchema>;

export type MessageType = keyof typeof MESSAGE_SCHEMAS;
export type MessageData<T extends MessageType> = Static<(typeof MESSAGE_SCHEMAS)[T]>;

export const NODE_MESSAGE_TYPES = [
  'RegisterNode',
  'Heartbeat',
  'JobAccepted',
  'JobRejected',
  'LogChunk',
  'JobResult',
  'Deregister',
] as const satisfies readonly MessageType[];
export type NodeMessageType = (typeof NODE_MESSAGE_TYPES)[number];
export type PlaneMessageType = Exclude<MessageType, NodeMessageType>;

/** The envelope of PROTOCOL.md section 2, for one message type. */
export interface EnvelopeOf<T extends MessageType> {
  type: T;
  data: MessageData<T>;
  id?: string;
  reply_to?: string;
  traceparent?: string;
}

/** Any message, discriminated on `type`. */
export type Message = { [T in MessageType]: EnvelopeOf<T> }[MessageType];
export type NodeMessage = { [T in NodeMessageType]: EnvelopeOf<T> }[NodeMessageType];
export type PlaneMessage = { [T in PlaneMessageType]: EnvelopeOf<T> }[PlaneMessageType];

export function isMessageType(value: unknown): value is MessageType {
  return typeof value === 'string' && Object.hasOwn(MESSAGE_SCHEMAS, value);
}
