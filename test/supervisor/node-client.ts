// A raw node-protocol client for tests of the control plane: one real `net` socket (TCP or Unix),
// frames written byte for byte as the test wants them (broken ones too), and every frame the plane
// sends decoded and validated as a plane message, kept in order until the test takes it.
// It deliberately shares nothing with agent/: it is what a third-party node would be.
import { connect, type Socket } from 'node:net';
import { codecByName, encodeBody, type Codec, type CodecName } from '../../protocol/codec.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import type { EnvelopeOf, NodeStatus, PlaneMessageType, Resume } from '../../protocol/messages.js';
import { tcpAddress } from '../../transports/tcp.js';
import { unixPath } from '../../transports/unix.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { PlaneInbox, type Received } from './plane-inbox.js';

/** How long `next` and `closedWithin` wait by default: generous, for a busy 2-core machine. */
export const DEFAULT_WAIT_MS = 5_000;

export type { Received } from './plane-inbox.js';

export interface NodeClientOptions {
  /** Keep our side open after the plane's FIN (a node slow to notice), default false. */
  allowHalfOpen?: boolean;
  /** Largest frame accepted from the plane. */
  maxFrameBytes?: number;
}

export interface RegisterOptions {
  /** `auth_token`: a registration token, or a session token with `resume`. */
  token: string;
  /** Codec of the `RegisterNode` frame, default JSON. */
  codec?: CodecName;
  /** `node_info.hostname`, default the sample's `runner-01.example.test`. */
  hostname?: string;
  /** `node_info.node_type`, default the sample's `linux-x64`. */
  nodeType?: string;
  /** `node_info.tags`, default the sample's. */
  tags?: Record<string, string>;
  resume?: Resume;
  /** `protocol_versions` (v2), default none (version 1). */
  protocolVersions?: number[];
  /** `wire_features` (v2), default none. */
  wireFeatures?: string[];
  /** Envelope `id`, default `m-1`; `null` sends none. */
  id?: string | null;
}

export interface HeartbeatOptions {
  /** Default the node id from the last `RegisterAck`. */
  nodeId?: string;
  status?: NodeStatus;
  id?: string;
  codec?: CodecName;
}

/** A valid `RegisterNode` envelope built from the protocol samples. */
export function registerNodeMessage(o: RegisterOptions): EnvelopeOf<'RegisterNode'> {
  const message = sampleMessages().RegisterNode;
  delete message.traceparent;
  if (o.id === null) delete message.id;
  else message.id = o.id ?? 'm-1';
  message.data.auth_token = o.token;
  if (o.hostname !== undefined) message.data.node_info.hostname = o.hostname;
  if (o.nodeType !== undefined) message.data.node_info.node_type = o.nodeType;
  if (o.tags !== undefined) message.data.node_info.tags = o.tags;
  if (o.resume === undefined) delete message.data.resume;
  else message.data.resume = o.resume;
  if (o.protocolVersions !== undefined) message.data.protocol_versions = o.protocolVersions;
  if (o.wireFeatures !== undefined) message.data.wire_features = o.wireFeatures;
  return message;
}

/** A valid `Heartbeat` envelope for `nodeId`. */
export function heartbeatMessage(nodeId: string, status: NodeStatus = 'Ready', id?: string): EnvelopeOf<'Heartbeat'> {
  const message = sampleMessages().Heartbeat;
  delete message.id;
  if (id !== undefined) message.id = id;
  message.data.node_id = nodeId;
  message.data.status = status;
  message.data.metrics.active_jobs = 0;
  message.data.timestamp = new Date().toISOString();
  return message;
}

export class NodeClient {
  /** Node id and session token from the last `RegisterAck`. */
  nodeId: string | undefined;
  sessionToken: string | undefined;
  /** Resolves when the socket is fully closed, by either side. */
  readonly closed: Promise<void>;
  /** Resolves when the plane has closed its side (FIN). */
  readonly ended: Promise<void>;
  private readonly decoder: FrameDecoder;
  private readonly inbox = new PlaneInbox();
  private socketClosed = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly socket: Socket,
    options: NodeClientOptions,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameBytes ?? 4 * DEFAULT_MAX_FRAME_BYTES);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    this.ended = new Promise((resolve) => socket.once('end', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // A reset by the plane is one way of closing; the test looks at `closed`, not at the error.
    socket.on('error', () => {});
    socket.once('close', () => {
      this.socketClosed = true;
      this.stopHeartbeats();
      this.inbox.close();
    });
  }

  /** Dials `tcp://host:port` or `unix:///path`; rejects when the plane is not there. */
  static connect(url: string, options: NodeClientOptions = {}): Promise<NodeClient> {
    const parsed = new URL(url);
    const allowHalfOpen = options.allowHalfOpen ?? false;
    const socket =
      parsed.protocol === 'unix:'
        ? connect({ path: unixPath(parsed), allowHalfOpen })
        : connect({ ...tcpAddress(parsed), allowHalfOpen });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new NodeClient(socket, options));
      });
    });
  }

  get isClosed(): boolean {
    return this.socketClosed;
  }

  /** Frames received and not yet taken with `next`. */
  unread(): Received[] {
    return this.inbox.unread();
  }

  /** Writes bytes as they are: a header alone, a broken frame, several frames at once. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Writes one well-formed frame around any body. */
  sendFrame(codecByte: number, body: Uint8Array): void {
    this.sendRaw(encodeFrame(codecByte, body));
  }

  /** Encodes any value (an envelope or not) in `codec` and sends it as one frame. */
  send(value: unknown, codec: CodecName = 'json'): void {
    const byte: Codec = codecByName(codec);
    this.sendFrame(byte, encodeBody(byte, value));
  }

  /**
   * The next frame from the plane, in order. With `type`, a frame of any other type fails the
   * wait (with what arrived instead), so a test cannot skip over a frame it did not expect.
   */
  next<T extends PlaneMessageType>(type?: T, timeoutMs = DEFAULT_WAIT_MS): Promise<Received<T>> {
    return this.inbox.next(type, timeoutMs);
  }

  /** Sends a valid `RegisterNode` and waits for the `RegisterAck` (an `Error` instead fails). */
  async register(o: RegisterOptions): Promise<EnvelopeOf<'RegisterAck'>> {
    this.send(registerNodeMessage(o), o.codec);
    const { message } = await this.next('RegisterAck');
    this.nodeId = message.data.node_id;
    this.sessionToken = message.data.session_token;
    return message;
  }

  /** Sends a valid `Heartbeat` for this node (or `o.nodeId`). */
  heartbeat(o: HeartbeatOptions = {}): void {
    const nodeId = o.nodeId ?? this.nodeId;
    if (nodeId === undefined) throw new Error('heartbeat before RegisterAck: pass nodeId');
    this.send(heartbeatMessage(nodeId, o.status, o.id), o.codec);
  }

  /** Heartbeats every `intervalMs` until `stopHeartbeats` or the close, as a live node does. */
  startHeartbeats(intervalMs: number): void {
    this.stopHeartbeats();
    this.heartbeatTimer = setInterval(() => {
      if (!this.socketClosed) this.heartbeat();
    }, intervalMs);
  }

  stopHeartbeats(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** Resolves once the socket is closed; rejects if it is still open after `timeoutMs`. */
  async closedWithin(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends our side and waits for the close. */
  async close(): Promise<void> {
    this.stopHeartbeats();
    if (!this.socketClosed) this.socket.end();
    await this.closedWithin();
  }

  /** Drops the connection at once (no FIN handshake). */
  destroy(): void {
    this.stopHeartbeats();
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    try {
      this.decoder.push(chunk, (codecByte, body) => this.inbox.frame(codecByte, body));
    } catch (err) {
      this.inbox.fail(new Error('the plane sent a bad frame header', { cause: err }));
    }
  }

}



/** A valid `JobResult` envelope for `attempt` of `jobId` from `nodeId` (`id` default `r-<job>-<attempt>`). */
export function jobResultMessage(
  nodeId: string | undefined,
  jobId: string,
  attempt: number,
  status: 'Completed' | 'Failed' = 'Completed',
  stdout = '',
  id = `r-${jobId}-${attempt}`,
): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    type: 'JobResult',
    id,
    data: {
      job_id: jobId,
      attempt,
      node_id: nodeId,
      result: { status, exit_code: status === 'Completed' ? 0 : 1, stdout, stderr: '', artifacts: [], started_at: now, completed_at: now },
      metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
    },
  };
}
