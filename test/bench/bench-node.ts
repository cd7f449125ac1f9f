// A benchmark node as the plane sees it: tokens minted from the plane's own secret, the
// RegisterNode and Heartbeat envelopes, and registration over a FrameSocket. Shared by
// `npm run bench` (tcp) and the fleet workers, so that both register nodes the same way.
import { encodeBody, type Codec } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { secretFromDataDir } from '../../supervisor/tokens/secret.js';
import { TokenAuthority, type ApiRole } from '../../supervisor/tokens/tokens.js';
import { FrameSocket, type Envelope } from './frame-socket.js';

export interface BenchNode {
  socket: FrameSocket;
  nodeId: string;
  /** `heartbeat_interval_ms` of the RegisterAck. */
  heartbeatIntervalMs: number;
  /** `session_token` of the RegisterAck: what the node resumes with. */
  sessionToken: string;
}

export interface RegisterOptions {
  /** `node_info.hostname`; default `bench`. */
  hostname?: string;
  /** `max_resources.cpu_cores`; default 1. */
  cpuCores?: number;
  /** Milliseconds to wait for the RegisterAck; default 30 s. */
  timeoutMs?: number;
  /** Resume this node's session (the token given is then its session token). */
  resumeNodeId?: string;
  /** Wire features to offer (protocol version 2); default none, as a version 1 node. */
  wireFeatures?: string[];
  /** `node_info.tags`; default none. */
  tags?: Record<string, string>;
}

/** A tag naming the node (its hostname), for a job meant for that node alone. */
export const NODE_TAG = 'bench_node';

/** The token authority of the plane whose data directory is `dataDir` (it wrote its secret there). */
export function planeTokens(dataDir: string): TokenAuthority {
  const secret = secretFromDataDir(dataDir);
  if (secret === undefined) throw new Error(`the plane wrote no secret in ${dataDir}`);
  return new TokenAuthority(secret);
}

/** A `node:register` token of the plane in `dataDir`, for any hostname. */
export function mintNodeToken(dataDir: string, ttlSeconds = 3600): Promise<string> {
  return planeTokens(dataDir).mintRegistrationToken({ ttlSeconds });
}

/** An admin API token of the plane in `dataDir`. */
export function mintApiToken(dataDir: string, role: ApiRole, ttlSeconds = 3600): Promise<string> {
  return planeTokens(dataDir).mintApiToken({ role, ttlSeconds });
}

export function registerEnvelope(token: string, options: RegisterOptions = {}): Envelope {
  return {
    type: 'RegisterNode',
    data: {
      node_info: {
        hostname: options.hostname ?? 'bench',
        ip_address: '127.0.0.1',
        port: 0,
        node_type: 'bench',
        version: '0',
        platform: 'linux',
        architecture: 'x64',
        tags: options.tags ?? {},
      },
      capabilities: {
        runner_types: ['shell'],
        max_resources: { cpu_cores: options.cpuCores ?? 1, memory_mb: 1024, disk_gb: 10, network_mbps: 0 },
        supported_job_types: ['command'],
        features: [],
        protocols: ['tcp'],
      },
      auth_token: token,
      ...(options.resumeNodeId === undefined ? {} : { resume: { node_id: options.resumeNodeId, running_jobs: [], unacked_results: [] } }),
      ...(options.wireFeatures === undefined ? {} : { protocol_versions: [1, 2], wire_features: options.wireFeatures }),
    },
  };
}

/** Opens a connection to the plane's TCP listener and registers; rejects when refused. */
export async function registerNode(tcpUrl: URL, codec: Codec, token: string, options: RegisterOptions = {}): Promise<BenchNode> {
  const socket = await FrameSocket.open(tcpUrl.hostname, Number(tcpUrl.port));
  try {
    const ack = socket.next((e) => e.type === 'RegisterAck' || e.type === 'Error', options.timeoutMs);
    await socket.write(encodeFrame(codec, encodeBody(codec, registerEnvelope(token, options))));
    const answer = await ack;
    if (answer.type !== 'RegisterAck') throw new Error(`registration refused: ${JSON.stringify(answer.data)}`);
    return {
      socket,
      nodeId: String(answer.data.node_id),
      heartbeatIntervalMs: Number(answer.data.heartbeat_interval_ms),
      sessionToken: String(answer.data.session_token),
    };
  } catch (err) {
    socket.close();
    throw err;
  }
}

/** A `Heartbeat` of node `nodeId`, with `id` when given (an id asks for no answer; errors would carry it). */
export function heartbeatEnvelope(nodeId: string, id?: string, status: 'Ready' | 'Busy' = 'Ready'): Envelope & { id?: string } {
  const heartbeat: Envelope & { id?: string } = {
    type: 'Heartbeat',
    data: {
      node_id: nodeId,
      status,
      resources: { cpu_cores: 1, memory_mb: 1024, available_cpu: 1, available_memory_mb: 1024 },
      metrics: { cpu_usage_percent: 12.5, memory_usage_percent: 40, active_jobs: 0, completed_jobs: 10, failed_jobs: 0 },
      timestamp: new Date().toISOString(),
    },
  };
  if (id !== undefined) heartbeat.id = id;
  return heartbeat;
}

export function heartbeatFrame(nodeId: string, codec: Codec, id?: string, status: 'Ready' | 'Busy' = 'Ready'): Uint8Array {
  return encodeFrame(codec, encodeBody(codec, heartbeatEnvelope(nodeId, id, status)));
}
