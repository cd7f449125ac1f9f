// Every message of PROTOCOL.md section 3 as a TypeBox schema, and its static type.
// The schemas are the one source: validators are compiled from them (validator.ts),
// and the TypeScript types are derived from them, so the two never drift apart.
import { Type, type Static, type TArray, type TObject, type TProperties, type TRecord, type TSchema, type TString } from '@sinclair/typebox';

// ---- Bounds (issue 8, items 8 and 9) ----
// Every string, array and map has a bound, so that no field can make a node cost the plane
// memory or decoding time out of proportion to what the field is for. Large free text (log
// data, command arguments, results) is bounded by the frame (`max_frame_bytes`) first; the
// ceilings below hold even for a plane configured with larger frames.

/** RFC 1035 / RFC 1123: a domain name in text is at most 253 characters. */
export const HOSTNAME_MAX = 253;
/** The longest textual IPv6 address is 45 characters (IPv4-mapped); room for a zone id (`%eth0`). */
export const ADDRESS_MAX = 64;
/** Short names: node type, version, platform, architecture, runner and job types, features, ids of workspaces. */
export const NAME_MAX = 128;
/** Tags as the large clouds allow them (AWS: 50 tags, keys of 128 and values of 256 characters). */
export const TAGS_MAX = 64;
export const TAG_KEY_MAX = 128;
export const TAG_VALUE_MAX = 256;
/** Runner types, job types, features, protocols of one node: a handful in practice. */
export const LIST_MAX = 32;
/** A JWT: servers commonly take an HTTP header of at most 8 KiB. */
export const TOKEN_MAX = 8192;
/** Jobs a reconnecting node lists in `resume` (running, and results not yet acknowledged). */
export const RESUME_JOBS_MAX = 1024;
/** A human-readable reason (rejection, cancel, deregister, shutdown). */
export const REASON_MAX = 1024;
/** Paths and other long names (image, job name, git ref, artifact): PATH_MAX is 4096. */
export const PATH_MAX = 4096;
/** Arguments of a command and entries of an environment: what Linux takes (ARG_MAX/MAX_ARG_STRLEN). */
export const COMMAND_ARGS_MAX = 4096;
export const ENV_ENTRIES_MAX = 1024;
export const ENV_KEY_MAX = 256;
/** Linux's MAX_ARG_STRLEN: one argument or one `KEY=value` string is at most 128 KiB. */
export const ARG_MAX_CHARS = 131_072;
/** Ceiling of frame-bounded text (log data, stdout, stderr): 16 Mi characters. */
export const TEXT_MAX = 16 * 1024 * 1024;
/** Artifacts listed in one result, and uploaded for one attempt. */
export const ARTIFACTS_MAX = 1024;
/** Patterns (`job.artifacts`) one job may list. */
export const ARTIFACT_PATTERNS_MAX = 64;
/** File bytes in one `ArtifactChunk` (PROTOCOL.md section 8): 256 KiB. */
export const ARTIFACT_CHUNK_MAX = 256 * 1024;
/** The base64 text of ARTIFACT_CHUNK_MAX bytes, padded (JSON carries a chunk so). */
export const ARTIFACT_CHUNK_BASE64_MAX = 4 * Math.ceil(ARTIFACT_CHUNK_MAX / 3);
/** `setTimeout`'s largest delay: a longer interval would fire at once. */
export const TIMER_MAX_MS = 2 ** 31 - 1;
/**
 * Fields every object may carry beyond those it defines: unknown fields are ignored (PROTOCOL.md
 * section 2), so that a newer peer may add some, but not without limit.
 */
export const SPARE_FIELDS = 32;

/**
 * No C0 or C1 control character (item 9): names, tags and identifiers reach terminals (`muster
 * nodes`) and logs, where an escape sequence or a newline could forge what is shown.
 */
const PRINTABLE = '[^\\u0000-\\u001f\\u007f-\\u009f]';
/** Free text that goes to a process (arguments, environment): anything but NUL, which no C string holds. */
const NO_NUL = '^[^\\u0000]*$';

/** A name: printable, `min` to `max` characters. */
export function Name(max: number, min = 0): TString {
  return Type.String({ minLength: min, maxLength: max, pattern: `^${PRINTABLE}*$` });
}

/** An object that keeps room for SPARE_FIELDS unknown fields, no more. */
function Obj<P extends TProperties>(properties: P): TObject<P> {
  return Type.Object(properties, { maxProperties: Object.keys(properties).length + SPARE_FIELDS });
}

/** A `{string: string}` map of at most `entries` printable keys of up to `keyMax` characters. */
function NameMap(entries: number, keyMax: number, value: TString): TRecord<TString, TString> {
  const key = Type.String({ pattern: `^${PRINTABLE}{1,${keyMax}}$` });
  return Type.Record(key, value, { maxProperties: entries, additionalProperties: false });
}

/** An environment-like map: keys printable without `=`, values anything but NUL. */
function EnvMap(): TRecord<TString, TString> {
  const key = Type.String({ pattern: `^(?:(?!=)${PRINTABLE}){1,${ENV_KEY_MAX}}$` });
  const value = Type.String({ maxLength: ARG_MAX_CHARS, pattern: NO_NUL });
  return Type.Record(key, value, { maxProperties: ENV_ENTRIES_MAX, additionalProperties: false });
}

function List<T extends TSchema>(item: T, max: number): TArray<T> {
  return Type.Array(item, { maxItems: max });
}

const Uuid = Type.String({ pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' });
/** RFC 3339 date-time; senders write UTC (`Z`), receivers also take an offset. */
const Timestamp = Type.String({
  maxLength: 64,
  pattern: '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$',
});
const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Amount = Type.Number({ minimum: 0 });
const Attempt = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const Interval = Type.Integer({ minimum: 1, maximum: TIMER_MAX_MS });
const Reason = Type.String({ maxLength: REASON_MAX });
export const TagMap = NameMap(TAGS_MAX, TAG_KEY_MAX, Name(TAG_VALUE_MAX));
const Text = Type.String({ maxLength: TEXT_MAX });

export const Duration = Obj({ secs: Count, nanos: Type.Integer({ minimum: 0, maximum: 999_999_999 }) });
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

export const NodeInfo = Obj({
  hostname: Name(HOSTNAME_MAX, 1),
  ip_address: Name(ADDRESS_MAX),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  node_type: Name(NAME_MAX),
  version: Name(NAME_MAX),
  platform: Name(NAME_MAX),
  architecture: Name(NAME_MAX),
  tags: TagMap,
});
export type NodeInfo = Static<typeof NodeInfo>;

export const MaxResources = Obj({
  cpu_cores: Amount,
  memory_mb: Amount,
  disk_gb: Amount,
  network_mbps: Amount,
});

export const Capabilities = Obj({
  runner_types: List(Name(NAME_MAX), LIST_MAX),
  max_resources: MaxResources,
  supported_job_types: List(Name(NAME_MAX), LIST_MAX),
  features: List(Name(NAME_MAX), LIST_MAX),
  protocols: List(Name(NAME_MAX), LIST_MAX),
});
export type Capabilities = Static<typeof Capabilities>;

/** Protocol versions one side speaks (v2): a short list; the plane answers with the highest in common. */
const VERSIONS_MAX = 16;
export const ProtocolVersion = Type.Integer({ minimum: 1, maximum: 65_535 });
/** The optional wire features of version 2 (PROTOCOL.md section 8). */
export const WIRE_FEATURES = ['deflate', 'batch', 'artifacts'] as const;
export type WireFeature = (typeof WIRE_FEATURES)[number];
/** Envelopes one `Batch` carries at most (v2, the `batch` wire feature, PROTOCOL.md section 8). */
export const BATCH_MAX = 256;
/** Offered features: names the node knows, some perhaps newer than the plane's (ignored), so any short name. */
const OfferedFeatures = List(Name(NAME_MAX), VERSIONS_MAX);

export const Resume = Obj({
  node_id: Uuid,
  running_jobs: List(Uuid, RESUME_JOBS_MAX),
  unacked_results: List(Uuid, RESUME_JOBS_MAX),
});
export type Resume = Static<typeof Resume>;

export const ResourceRequirements = Obj({ cpu_cores: Amount, memory_mb: Amount, disk_gb: Amount });
export type ResourceRequirements = Static<typeof ResourceRequirements>;

/**
 * One entry of `job.artifacts` (v2, `artifacts` agreed): a path or glob relative to the job's
 * work directory, never absolute and never through `..`; `name` renames a single match.
 */
export const ArtifactPattern = Obj({
  path: Type.String({ minLength: 1, maxLength: PATH_MAX, pattern: `^(?!/)(?!(?:.*/)?\\.\\.(?:/|$))${PRINTABLE}+$` }),
  name: Type.Optional(Name(PATH_MAX, 1)),
});
export type ArtifactPattern = Static<typeof ArtifactPattern>;

export const JobSpec = Obj({
  name: Name(PATH_MAX),
  image: Name(PATH_MAX),
  command: Type.Array(Type.String({ maxLength: ARG_MAX_CHARS, pattern: NO_NUL }), { minItems: 1, maxItems: COMMAND_ARGS_MAX }),
  environment: EnvMap(),
  timeout: Duration,
  resource_requirements: ResourceRequirements,
  /** v2: files the node uploads before its JobResult; only sent to a node whose session turned `artifacts` on. */
  artifacts: Type.Optional(List(ArtifactPattern, ARTIFACT_PATTERNS_MAX)),
});
export type JobSpec = Static<typeof JobSpec>;

export const ExecutionContext = Obj({
  workspace_id: Name(NAME_MAX),
  pipeline_id: Name(NAME_MAX),
  build_number: Count,
  /** git check-ref-format refuses control characters in a ref, too. */
  git_ref: Name(PATH_MAX),
  variables: EnvMap(),
  secrets: EnvMap(),
});
export type ExecutionContext = Static<typeof ExecutionContext>;

const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const ArtifactSize = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

/** An uploaded artifact as `result.artifacts` lists it (v2); a version 1 node may list names only. */
export const ResultArtifact = Obj({ artifact_id: Uuid, name: Name(PATH_MAX, 1), size: ArtifactSize, sha256: Sha256 });
export type ResultArtifact = Static<typeof ResultArtifact>;

export const JobOutcome = Obj({
  status: ResultStatus,
  exit_code: Type.Union([Type.Integer({ minimum: -(2 ** 31), maximum: 2 ** 32 }), Type.Null()]),
  stdout: Text,
  stderr: Text,
  artifacts: List(Type.Union([Name(PATH_MAX), ResultArtifact]), ARTIFACTS_MAX),
  started_at: Timestamp,
  completed_at: Timestamp,
});
export type JobOutcome = Static<typeof JobOutcome>;

export const JobMetrics = Obj({ duration_ms: Amount, cpu_time_ms: Amount, memory_peak_mb: Amount });
export type JobMetrics = Static<typeof JobMetrics>;

/** `data` schemas by message type. Node-to-plane first, then plane-to-node. */
export const MESSAGE_SCHEMAS = {
  RegisterNode: Obj({
    node_info: NodeInfo,
    capabilities: Capabilities,
    auth_token: Type.String({ minLength: 1, maxLength: TOKEN_MAX }),
    resume: Type.Optional(Resume),
    /** v2: the versions the node speaks; absent means `[1]`. */
    protocol_versions: Type.Optional(List(ProtocolVersion, VERSIONS_MAX)),
    /** v2: the wire features the node offers. */
    wire_features: Type.Optional(OfferedFeatures),
  }),
  Heartbeat: Obj({
    node_id: Uuid,
    status: NodeStatus,
    resources: Obj({ cpu_cores: Amount, memory_mb: Amount, available_cpu: Amount, available_memory_mb: Amount }),
    metrics: Obj({
      cpu_usage_percent: Amount,
      memory_usage_percent: Amount,
      active_jobs: Count,
      completed_jobs: Count,
      failed_jobs: Count,
    }),
    timestamp: Timestamp,
  }),
  JobAccepted: Obj({ job_id: Uuid, attempt: Attempt }),
  JobRejected: Obj({ job_id: Uuid, attempt: Attempt, reason: Reason }),
  LogChunk: Obj({ job_id: Uuid, attempt: Attempt, stream: LogStream, seq: Count, data: Text }),
  JobResult: Obj({ job_id: Uuid, attempt: Attempt, node_id: Uuid, result: JobOutcome, metrics: JobMetrics }),
  Deregister: Obj({ node_id: Uuid, reason: Reason }),
  /** v2, `artifacts`: an upload begins, or resumes (the same `artifact_id`) after a reconnect. */
  ArtifactStart: Obj({
    job_id: Uuid,
    attempt: Attempt,
    artifact_id: Uuid,
    name: Name(PATH_MAX, 1),
    size: ArtifactSize,
    sha256: Sha256,
    content_type: Type.Optional(Name(NAME_MAX, 1)),
  }),
  /** v2, `artifacts`: file bytes from `offset`; binary in MessagePack, base64 text in JSON. */
  ArtifactChunk: Obj({
    artifact_id: Uuid,
    offset: ArtifactSize,
    data: Type.Union([
      Type.Uint8Array({ maxByteLength: ARTIFACT_CHUNK_MAX }),
      Type.String({ maxLength: ARTIFACT_CHUNK_BASE64_MAX, pattern: '^[A-Za-z0-9+/]*={0,2}$' }),
    ]),
  }),
  /** v2, `artifacts`: every byte was sent. */
  ArtifactEnd: Obj({ artifact_id: Uuid }),

  RegisterAck: Obj({
    node_id: Uuid,
    session_token: Type.String({ maxLength: TOKEN_MAX }),
    session_expires_at: Timestamp,
    heartbeat_interval_ms: Interval,
    protocol_version: Type.Union([Type.Literal(1), Type.Literal(2)]),
    control_plane_id: Name(NAME_MAX),
    resumed: Type.Boolean(),
    /** v2 only: the offered features turned on for this session. */
    wire_features: Type.Optional(List(Type.Union(WIRE_FEATURES.map((f) => Type.Literal(f))), VERSIONS_MAX)),
    /** v2 only: bodies from this size on are sent compressed when `deflate` is on. */
    compress_min_bytes: Type.Optional(Type.Integer({ minimum: 0, maximum: 1 << 30 })),
    /** v2 only: bytes of an artifact that may be in flight unacknowledged when `artifacts` is on. */
    artifact_window_bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 30 })),
  }),
  JobAssignment: Obj({
    job_id: Uuid,
    attempt: Attempt,
    job: JobSpec,
    execution_context: ExecutionContext,
    deadline: Type.Optional(Timestamp),
    priority: Priority,
  }),
  JobResultAck: Obj({ job_id: Uuid, attempt: Attempt }),
  CancelJob: Obj({ job_id: Uuid, attempt: Attempt, reason: Reason }),
  Drain: Obj({ deadline: Type.Optional(Timestamp) }),
  /** Takes back a `Drain`: sent only to a node that lists the `undrain` feature (a Muster extension). */
  Undrain: Obj({}),
  Shutdown: Obj({ reason: Reason, grace_period_ms: Type.Integer({ minimum: 0, maximum: TIMER_MAX_MS }) }),
  TokenRefresh: Obj({ session_token: Type.String({ maxLength: TOKEN_MAX }), session_expires_at: Timestamp }),
  Configure: Obj({ heartbeat_interval_ms: Interval }),
  LogResync: Obj({ job_id: Uuid, attempt: Attempt, stream: LogStream, next_seq: Count }),
  /** v2, `artifacts`: the plane has stored the first `received` bytes; `complete` once the digest matched. */
  ArtifactAck: Obj({ artifact_id: Uuid, received: ArtifactSize, complete: Type.Boolean() }),
  Error: Obj({
    code: Name(64),
    message: Type.String({ maxLength: REASON_MAX * 4 }),
    fatal: Type.Boolean(),
    field: Type.Optional(Type.String({ maxLength: 512 })),
  }),
  /**
   * v2, either direction, only on a session that turned `batch` on: 1 to BATCH_MAX whole
   * envelopes, each read and validated as if it had come in its own frame (protocol/batch.ts),
   * so the schema holds them as they come.
   */
  Batch: Obj({ messages: Type.Array(Type.Unknown(), { minItems: 1, maxItems: BATCH_MAX }) }),
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
  'ArtifactStart',
  'ArtifactChunk',
  'ArtifactEnd',
] as const satisfies readonly MessageType[];
export type NodeMessageType = (typeof NODE_MESSAGE_TYPES)[number];
/** `Batch` is neither side's own: it carries the others' messages (protocol/batch.ts). */
export type PlaneMessageType = Exclude<MessageType, NodeMessageType | 'Batch'>;

/**
 * Message types that belong to a wire feature (PROTOCOL.md section 8): on a session that did
 * not turn that feature on they are `unknown_type`, as if this version did not know them.
 */
export const FEATURE_OF_TYPE: Partial<Record<MessageType, WireFeature>> = {
  ArtifactStart: 'artifacts',
  ArtifactChunk: 'artifacts',
  ArtifactEnd: 'artifacts',
  ArtifactAck: 'artifacts',
};

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
export type BatchMessage = EnvelopeOf<'Batch'>;

export function isMessageType(value: unknown): value is MessageType {
  return typeof value === 'string' && Object.hasOwn(MESSAGE_SCHEMAS, value);
}
