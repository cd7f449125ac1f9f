// One valid envelope per message type of PROTOCOL.md section 3, for tests that need
// real messages (codec round trips, fuzz seeds, transports, actors). The mapped
// return type makes the compiler insist on a sample for every type in MESSAGE_SCHEMAS.
import type { EnvelopeOf, MessageType, NodeMessageType } from '../../protocol/messages.js';
import { NODE_MESSAGE_TYPES } from '../../protocol/messages.js';
import { validateBatch, validateNodeMessage, validatePlaneMessage } from '../../protocol/validator.js';

export type SampleMessages = { [T in MessageType]: EnvelopeOf<T> };

export const SAMPLE_NODE_ID = '3f2b8c1e-7d4a-4e59-9b1c-2a6f0d8e4c71';
export const SAMPLE_JOB_ID = '9a0c6e42-1b7f-4d38-8e25-5f3a9c1d0b64';
export const SAMPLE_ARTIFACT_ID = '5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e';
const OTHER_JOB_ID = 'c4e1f7a2-6b3d-4f09-a8e6-1d2b3c4d5e6f';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** A fresh set of samples each call, so a test may mutate its copy. */
export function sampleMessages(): SampleMessages {
  return {
    RegisterNode: {
      type: 'RegisterNode',
      id: 'm-1',
      traceparent: TRACEPARENT,
      data: {
        node_info: {
          hostname: 'runner-01.example.test',
          ip_address: '10.0.0.17',
          port: 9000,
          node_type: 'linux-x64',
          version: '1.4.2',
          platform: 'linux',
          architecture: 'x86_64',
          tags: { region: 'eu-west', gpu: 'none' },
        },
        capabilities: {
          runner_types: ['docker', 'shell'],
          max_resources: { cpu_cores: 8, memory_mb: 16384, disk_gb: 200.5, network_mbps: 1000 },
          supported_job_types: ['build', 'test'],
          features: ['artifacts', 'log-streaming'],
          protocols: ['tcp', 'ws'],
        },
        auth_token: 'eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6Im5vZGU6cmVnaXN0ZXIifQ.c2lnbmF0dXJl',
        resume: { node_id: SAMPLE_NODE_ID, running_jobs: [SAMPLE_JOB_ID], unacked_results: [OTHER_JOB_ID] },
      },
    },
    Heartbeat: {
      type: 'Heartbeat',
      id: 'm-42',
      data: {
        node_id: SAMPLE_NODE_ID,
        status: 'Busy',
        resources: { cpu_cores: 8, memory_mb: 16384, available_cpu: 2.5, available_memory_mb: 4096 },
        metrics: {
          cpu_usage_percent: 68.75,
          memory_usage_percent: 75,
          active_jobs: 3,
          completed_jobs: 120,
          failed_jobs: 4,
        },
        timestamp: '2025-03-14T09:26:53.589Z',
      },
    },
    JobAccepted: { type: 'JobAccepted', reply_to: 'a-7', data: { job_id: SAMPLE_JOB_ID, attempt: 1 } },
    JobRejected: {
      type: 'JobRejected',
      reply_to: 'a-8',
      data: { job_id: OTHER_JOB_ID, attempt: 2, reason: 'no docker runtime on this node' },
    },
    LogChunk: {
      type: 'LogChunk',
      data: { job_id: SAMPLE_JOB_ID, attempt: 1, stream: 'stderr', seq: 17, data: 'npm WARN deprecated ✓ ünïcødé\n' },
    },
    JobResult: {
      type: 'JobResult',
      id: 'r-1',
      traceparent: TRACEPARENT,
      data: {
        job_id: SAMPLE_JOB_ID,
        attempt: 1,
        node_id: SAMPLE_NODE_ID,
        result: {
          status: 'Completed',
          exit_code: 0,
          stdout: 'all 412 tests passed\n',
          stderr: '',
          artifacts: ['dist/app.tar.gz'],
          started_at: '2025-03-14T09:20:00Z',
          completed_at: '2025-03-14T09:26:53.589Z',
        },
        metrics: { duration_ms: 413589, cpu_time_ms: 801234, memory_peak_mb: 1536.25 },
      },
    },
    Deregister: { type: 'Deregister', data: { node_id: SAMPLE_NODE_ID, reason: 'host maintenance' } },
    ArtifactStart: {
      type: 'ArtifactStart',
      id: 'u-1',
      data: {
        job_id: SAMPLE_JOB_ID,
        attempt: 1,
        artifact_id: SAMPLE_ARTIFACT_ID,
        name: 'dist/app.tar.gz',
        size: 11,
        sha256: 'b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9',
        content_type: 'application/gzip',
      },
    },
    // Base64 text, as JSON carries it (MessagePack carries binary): the same sample serves both codecs.
    ArtifactChunk: { type: 'ArtifactChunk', id: 'u-2', data: { artifact_id: SAMPLE_ARTIFACT_ID, offset: 0, data: 'aGVsbG8gd29ybGQ=' } },
    ArtifactEnd: { type: 'ArtifactEnd', id: 'u-3', data: { artifact_id: SAMPLE_ARTIFACT_ID } },

    RegisterAck: {
      type: 'RegisterAck',
      reply_to: 'm-1',
      data: {
        node_id: SAMPLE_NODE_ID,
        session_token: 'eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6Im5vZGU6c2Vzc2lvbiJ9.c2lnbmF0dXJl',
        session_expires_at: '2025-03-15T09:26:53Z',
        heartbeat_interval_ms: 5000,
        protocol_version: 1,
        control_plane_id: 'cp-a',
        resumed: true,
      },
    },
    JobAssignment: {
      type: 'JobAssignment',
      id: 'a-7',
      traceparent: TRACEPARENT,
      data: {
        job_id: SAMPLE_JOB_ID,
        attempt: 1,
        job: {
          name: 'unit tests',
          image: 'node:20-bookworm',
          command: ['npm', 'test', '--', '--reporter=dot'],
          environment: { CI: 'true', NODE_ENV: 'test' },
          timeout: { secs: 3600, nanos: 500_000_000 },
          resource_requirements: { cpu_cores: 2, memory_mb: 4096, disk_gb: 10 },
        },
        execution_context: {
          workspace_id: 'ws-acme',
          pipeline_id: 'pl-123',
          build_number: 981,
          git_ref: 'refs/heads/main',
          variables: { TARGET: 'linux' },
          secrets: { NPM_TOKEN: 'redacted' },
        },
        deadline: '2025-03-14T10:26:53Z',
        priority: 'High',
      },
    },
    JobResultAck: { type: 'JobResultAck', reply_to: 'r-1', data: { job_id: SAMPLE_JOB_ID, attempt: 1 } },
    CancelJob: { type: 'CancelJob', data: { job_id: OTHER_JOB_ID, attempt: 3, reason: 'cancelled by operator' } },
    Drain: { type: 'Drain', data: { deadline: '2025-03-14T12:00:00Z' } },
    Undrain: { type: 'Undrain', data: {} },
    Shutdown: { type: 'Shutdown', data: { reason: 'control plane stopping', grace_period_ms: 10000 } },
    TokenRefresh: {
      type: 'TokenRefresh',
      data: {
        session_token: 'eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6Im5vZGU6c2Vzc2lvbiIsIm4iOjJ9.c2lnbmF0dXJl',
        session_expires_at: '2025-03-16T09:26:53Z',
      },
    },
    Configure: { type: 'Configure', data: { heartbeat_interval_ms: 15000 } },
    LogResync: { type: 'LogResync', data: { job_id: SAMPLE_JOB_ID, attempt: 1, stream: 'stdout', next_seq: 12 } },
    ArtifactAck: { type: 'ArtifactAck', reply_to: 'u-1', data: { artifact_id: SAMPLE_ARTIFACT_ID, received: 0, complete: false } },
    Error: {
      type: 'Error',
      reply_to: 'm-9',
      data: {
        code: 'invalid_message',
        message: 'data.status: expected one of Ready, Busy, Draining',
        fatal: false,
        field: 'data.status',
      },
    },
    // v2 (the `batch` wire feature): whole envelopes, each read as if it came alone.
    Batch: {
      type: 'Batch',
      id: 'b-1',
      data: {
        messages: [
          { type: 'JobAccepted', id: 'a-9', data: { job_id: SAMPLE_JOB_ID, attempt: 1 } },
          { type: 'LogChunk', id: 'l-1', data: { job_id: SAMPLE_JOB_ID, attempt: 1, stream: 'stdout', seq: 0, data: 'building\n' } },
        ],
      },
    },
  };
}

const nodeTypes: ReadonlySet<string> = new Set(NODE_MESSAGE_TYPES);

/** True for the types a node sends to the control plane (validated by validateNodeMessage). */
export function isNodeMessageType(type: MessageType): type is NodeMessageType {
  return nodeTypes.has(type);
}

/** The validator of `type`'s receiver: the plane's for a node's type, a node's for the plane's, the Batch's own for a Batch. */
export function validatorOf(type: MessageType): (value: unknown) => unknown {
  if (type === 'Batch') return validateBatch;
  return isNodeMessageType(type) ? validateNodeMessage : validatePlaneMessage;
}
