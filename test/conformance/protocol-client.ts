// A node-protocol client for the conformance suite that works the same over every transport:
// on a transport `Connection` (dialed with `transportFor(url).dial`, as a Muster node would) or
// on a raw link (raw-links.ts) where a case needs bytes no Muster node sends. Every frame the
// plane sends is decoded and validated as a plane message and kept in order until taken.
import { codecByName, encodeBody, type CodecName } from '../../protocol/codec.js';
import type { EnvelopeOf, NodeStatus, PlaneMessageType, Resume } from '../../protocol/messages.js';
import '../../transports/builtin.js';
import { transportFor, type Connection } from '../../transports/transport.js';
import { DEFAULT_WAIT_MS, heartbeatMessage, registerNodeMessage } from '../supervisor/node-client.js';
import { PlaneInbox, type Received } from '../supervisor/plane-inbox.js';
import { NODE_HOSTNAME, type Target } from './plane-fixture.js';
import { dialRaw, type FrameLink, type RawLink } from './raw-links.js';

export type { Received } from '../supervisor/plane-inbox.js';

export interface RegisterOptions {
  /** `auth_token`: a registration token, or a session token with `resume`. */
  token: string;
  /** Codec of the `RegisterNode`, default JSON; later heartbeats use it too. */
  codec?: CodecName;
  /** `node_info.hostname`, default the one the test client certificate names. */
  hostname?: string;
  /** `node_info.tags`, added to the sample's: the suite routes jobs to one node by a tag. */
  tags?: Record<string, string>;
  /** `capabilities.max_resources.cpu_cores`: how many one-core jobs the node takes at once. */
  cpuCores?: number;
  resume?: Resume;
  /** `protocol_versions` (v2); absent: a version 1 node, which sends none. */
  protocolVersions?: number[];
  /** `wire_features` (v2), default none. */
  wireFeatures?: string[];
  /** Envelope `id`, default `reg-1`. */
  id?: string;
}

/** A valid `RegisterNode` envelope for the suite's nodes. */
export function registerMessage(o: RegisterOptions): EnvelopeOf<'RegisterNode'> {
  const message = registerNodeMessage({
    token: o.token,
    hostname: o.hostname ?? NODE_HOSTNAME,
    id: o.id ?? 'reg-1',
    ...(o.resume === undefined ? {} : { resume: o.resume }),
    ...(o.protocolVersions === undefined ? {} : { protocolVersions: o.protocolVersions }),
    ...(o.wireFeatures === undefined ? {} : { wireFeatures: o.wireFeatures }),
  });
  Object.assign(message.data.node_info.tags, o.tags ?? {});
  if (o.cpuCores !== undefined) message.data.capabilities.max_resources.cpu_cores = o.cpuCores;
  return message;
}

/** Options of the dialed side: it must take any frame the plane may legitimately send. */
function dialOptions(target: Target): Parameters<ReturnType<typeof transportFor>['dial']>[1] {
  return {
    maxFrameBytes: 4 * target.maxFrameBytes,
    maxSendBufferBytes: 64 * 1024 * 1024,
    connectTimeoutMs: DEFAULT_WAIT_MS,
    ...(target.tls === undefined ? {} : { tls: target.tls }),
  };
}

export class ProtocolClient<L extends FrameLink = FrameLink> {
  /** Node id and session token from the last `RegisterAck`. */
  nodeId: string | undefined;
  sessionToken: string | undefined;
  /** The codec of the last `RegisterNode`: heartbeats default to it. */
  codec: CodecName = 'json';
  /** Resolves when the connection is closed, by either side. */
  readonly closed: Promise<void>;
  private readonly inbox = new PlaneInbox();
  private linkClosed = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(readonly link: L) {
    let resolveClosed!: () => void;
    this.closed = new Promise((resolve) => (resolveClosed = resolve));
    link.start({
      frame: (codecByte, body) => this.inbox.frame(codecByte, body),
      error: (err) => this.inbox.fail(new Error('the plane sent a bad frame', { cause: err })),
      closed: () => {
        this.linkClosed = true;
        this.stopHeartbeats();
        resolveClosed();
        this.inbox.close();
      },
    });
  }

  /** A client on the transport's own `Connection`, dialed through the transport registry. */
  static async dial(target: Target): Promise<ProtocolClient<Connection>> {
    const url = new URL(target.url);
    return new ProtocolClient(await transportFor(url).dial(url, dialOptions(target)));
  }

  /** A client on a raw link of the target's transport family. */
  static async raw(target: Target): Promise<ProtocolClient<RawLink>> {
    return new ProtocolClient(await dialRaw(target));
  }

  get isClosed(): boolean {
    return this.linkClosed || this.link.isClosed;
  }

  /** Frames received and not yet taken with `next`. */
  unread(): Received[] {
    return this.inbox.unread();
  }

  /** Sends one frame of any body under any codec byte. */
  sendFrame(codecByte: number, body: Uint8Array): void {
    this.link.send(codecByte, body);
  }

  /** Encodes any value (an envelope or not) in `codec` and sends it as one frame. */
  send(value: unknown, codec: CodecName = 'json'): void {
    const byte = codecByName(codec);
    this.sendFrame(byte, encodeBody(byte, value));
  }

  /** The next frame from the plane; with `type`, a frame of another type fails the wait. */
  next<T extends PlaneMessageType>(type?: T, timeoutMs = DEFAULT_WAIT_MS): Promise<Received<T>> {
    return this.inbox.next(type, timeoutMs);
  }

  /** Sends a valid `RegisterNode` and waits for the `RegisterAck` (an `Error` instead fails). */
  async register(o: RegisterOptions): Promise<Received<'RegisterAck'>> {
    this.codec = o.codec ?? 'json';
    this.send(registerMessage(o), this.codec);
    const ack = await this.next('RegisterAck');
    this.nodeId = ack.message.data.node_id;
    this.sessionToken = ack.message.data.session_token;
    return ack;
  }

  /** Sends a valid `Heartbeat` for this node. */
  heartbeat(o: { status?: NodeStatus; id?: string; codec?: CodecName } = {}): void {
    if (this.nodeId === undefined) throw new Error('heartbeat before RegisterAck');
    this.send(heartbeatMessage(this.nodeId, o.status, o.id), o.codec ?? this.codec);
  }

  /** Heartbeats every `intervalMs` until `stopHeartbeats` or the close, as a live node does. */
  startHeartbeats(intervalMs: number): void {
    this.stopHeartbeats();
    this.heartbeatTimer = setInterval(() => {
      if (!this.isClosed) this.heartbeat();
    }, intervalMs);
  }

  stopHeartbeats(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  /** Resolves once the connection is closed; rejects if it is still open after `timeoutMs`. */
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

  /** Closes gracefully (no Deregister) and waits for the close. */
  async close(): Promise<void> {
    this.stopHeartbeats();
    if (!this.isClosed) await this.link.close();
  }

}

