// Raw node-side links to a control plane, one per transport family, written against the wire
// (PROTOCOL.md section 1) with none of transports/: a `net`/`tls` socket with the protocol's
// frame decoder, a bare `ws` client, and a bare HTTP/2 (`node:http2`) gRPC call. Each is a
// frame link like a transport `Connection`, and also reaches what a Muster peer never does:
// single bytes, empty or oversize messages, unknown gRPC codecs, not reading, dropping the
// connection without a goodbye. (A grpc-js client cannot stop reading, as it keeps reading its
// call into its own queue, nor drop its connection at once, hence plain HTTP/2 for gRPC.)
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket, type RawData } from 'ws';
import { CODEC_JSON, CODEC_MSGPACK } from '../../protocol/codec.js';
import { MusterError } from '../../protocol/errors.js';
import { FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { connectMethod, frameOf, type GrpcFrame } from '../../transports/grpc-frame.js';
import { tcpAddress } from '../../transports/tcp.js';
import { unixPath } from '../../transports/unix.js';
import { WS_SUBPROTOCOL } from '../../transports/websocket.js';
import type { ClientTlsOptions, FrameSink } from '../../transports/transport.js';
import type { Target } from './plane-fixture.js';

/** What a protocol client needs of a link: the shape of a transport `Connection`. */
export interface FrameLink {
  readonly isClosed: boolean;
  start(sink: FrameSink): void;
  send(codecByte: number, body: Uint8Array): void;
  close(): Promise<void>;
}

/** A raw link: a frame link that can also misbehave. */
export interface RawLinkBase extends FrameLink {
  /** Drops the connection at once, with no goodbye at any layer (no Deregister, close frame or half-close). */
  destroy(): void;
  /** Stops reading: what the plane sends piles up in its buffers. */
  pauseReading(): void;
  resumeReading(): void;
}

export type RawLink = RawStreamLink | RawWebSocketLink | RawGrpcLink;

/** How long a raw link waits for its connection, and for a graceful close. */
const LINK_TIMEOUT_MS = 5_000;

/** Opens the raw link of the target's transport family. */
export function dialRaw(target: Target): Promise<RawLink> {
  switch (target.kind) {
    case 'stream':
      return RawStreamLink.connect(target);
    case 'websocket':
      return RawWebSocketLink.connect(target);
    case 'grpc':
      return RawGrpcLink.connect(target);
  }
}

/** Delivers to a sink once it is there; what arrives earlier waits, in order. */
class SinkSlot {
  private sink: FrameSink | undefined;
  private early: ((sink: FrameSink) => void)[] = [];
  closed = false;

  start(sink: FrameSink): void {
    if (this.sink !== undefined) throw new Error('raw link already started');
    this.sink = sink;
    for (const event of this.early.splice(0)) event(sink);
  }

  frame(codecByte: number, body: Uint8Array): void {
    const copy = Uint8Array.from(body);
    this.emit((s) => s.frame(codecByte, copy));
  }

  error(err: MusterError): void {
    this.emit((s) => s.error(err));
  }

  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.emit((s) => s.closed(err));
  }

  private emit(event: (sink: FrameSink) => void): void {
    if (this.sink === undefined) this.early.push(event);
    else event(this.sink);
  }
}

function withTimeout<T>(what: string, promise: Promise<T>, ms = LINK_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function tlsOptions(tlsOptions: ClientTlsOptions | undefined): tls.ConnectionOptions {
  return { ca: tlsOptions?.ca, cert: tlsOptions?.cert, key: tlsOptions?.key };
}

// ---------------------------------------------------------------- stream (tcp, tls, unix)

/** A `net` or `tls` socket speaking length-prefixed frames. */
export class RawStreamLink implements RawLinkBase {
  readonly kind = 'stream';
  private readonly slot = new SinkSlot();
  private readonly decoder: FrameDecoder;
  private readonly whenClosed: Promise<void>;

  private constructor(
    readonly socket: net.Socket,
    maxFrameBytes: number,
  ) {
    this.decoder = new FrameDecoder(4 * maxFrameBytes);
    // Not `events.once`: it would reject on the 'error' that comes before a reset's close.
    this.whenClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk, (codecByte, body) => this.slot.frame(codecByte, body));
      } catch (err) {
        this.slot.error(err instanceof MusterError ? err : new MusterError('malformed_frame', String(err)));
      }
    });
    // A reset is one way for the plane to close; the test looks at the close, not the error.
    socket.on('error', () => {});
    socket.once('close', () => this.slot.close());
  }

  static async connect(target: Target): Promise<RawStreamLink> {
    const url = new URL(target.url);
    let socket: net.Socket;
    let ready: string;
    if (url.protocol === 'unix:') {
      socket = net.connect({ path: unixPath(url) });
      ready = 'connect';
    } else if (url.protocol === 'tls:') {
      socket = tls.connect({ ...tcpAddress(url), ...tlsOptions(target.tls) });
      ready = 'secureConnect';
    } else {
      socket = net.connect(tcpAddress(url));
      ready = 'connect';
    }
    await withTimeout(`connect to ${target.url}`, once(socket, ready));
    return new RawStreamLink(socket, target.maxFrameBytes);
  }

  get isClosed(): boolean {
    return this.slot.closed || this.socket.destroyed;
  }

  /** Bytes handed to the socket so far (headers, bodies, anything). */
  get bytesWritten(): number {
    return this.socket.bytesWritten;
  }

  start(sink: FrameSink): void {
    this.slot.start(sink);
  }

  send(codecByte: number, body: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(encodeFrame(codecByte, body));
  }

  /** Writes bytes as they are (a header alone, one byte of a frame); resolves once the socket took them. */
  writeBytes(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.write(bytes, () => resolve());
    });
  }

  async close(): Promise<void> {
    this.socket.end();
    await withTimeout('close', this.whenClosed);
  }

  destroy(): void {
    this.socket.destroy();
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }
}

// ---------------------------------------------------------------- websocket (ws, wss)

/** A bare `ws` client offering `muster.v1`: a text message is JSON, a binary one MessagePack. */
export class RawWebSocketLink implements RawLinkBase {
  readonly kind = 'websocket';
  private readonly slot = new SinkSlot();
  /** The close code the connection ended with (1006 when it was dropped without a close frame). */
  readonly closeCode: Promise<number>;
  /** Whether each received message was binary, in order: the codec as the wire says it. */
  readonly binaryFlags: boolean[] = [];

  private constructor(readonly ws: WebSocket) {
    this.closeCode = new Promise((resolve) => ws.once('close', (code: number) => resolve(code)));
    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.binaryFlags.push(isBinary);
      this.slot.frame(isBinary ? CODEC_MSGPACK : CODEC_JSON, data as Buffer);
    });
    ws.on('error', () => {});
    ws.once('close', () => this.slot.close());
  }

  static async connect(target: Target): Promise<RawWebSocketLink> {
    const ws = new WebSocket(target.url, WS_SUBPROTOCOL, {
      maxPayload: 64 * target.maxFrameBytes,
      perMessageDeflate: false,
      ...(target.url.startsWith('wss:') ? tlsOptions(target.tls) : {}),
    });
    ws.on('error', () => {});
    await withTimeout(`connect to ${target.url}`, once(ws, 'open'));
    return new RawWebSocketLink(ws);
  }

  get isClosed(): boolean {
    return this.slot.closed || this.ws.readyState !== WebSocket.OPEN;
  }

  start(sink: FrameSink): void {
    this.slot.start(sink);
  }

  send(codecByte: number, body: Uint8Array): void {
    if (codecByte !== CODEC_JSON && codecByte !== CODEC_MSGPACK) {
      throw new Error(`a WebSocket message is text or binary: codec byte 0x${codecByte.toString(16)} has no form`);
    }
    this.sendMessage(body, codecByte === CODEC_MSGPACK);
  }

  /** One message of exactly these bytes, text or binary. */
  sendMessage(data: Uint8Array, binary: boolean): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary });
  }

  async close(): Promise<void> {
    this.ws.close(1000);
    await withTimeout('close', this.closeCode);
  }

  destroy(): void {
    this.ws.terminate();
  }

  pauseReading(): void {
    this.ws.pause();
  }

  resumeReading(): void {
    this.ws.resume();
  }
}

// ---------------------------------------------------------------- grpc (grpc, grpcs)

/** gRPC's length prefix: a compressed flag and a big-endian uint32. */
const GRPC_PREFIX_BYTES = 5;

/** One `muster.v1.NodeLink/Connect` call over plain HTTP/2: gRPC messages framed by hand. */
export class RawGrpcLink implements RawLinkBase {
  readonly kind = 'grpc';
  private readonly slot = new SinkSlot();
  private pending: Buffer = Buffer.alloc(0);
  private grpcStatus: number | undefined;
  /** The call's `grpc-status` (0 OK, 1 CANCELLED, 8 RESOURCE_EXHAUSTED ...), undefined when it ended without one (a reset). */
  readonly status: Promise<number | undefined>;
  /** The raw Frames received, as decoded from the wire. */
  readonly frames: GrpcFrame[] = [];

  private constructor(
    readonly session: http2.ClientHttp2Session,
    readonly stream: http2.ClientHttp2Stream,
  ) {
    this.status = new Promise((resolve) => stream.once('close', () => resolve(this.grpcStatus)));
    stream.on('response', (headers) => this.noteStatus(headers));
    stream.on('trailers', (trailers) => this.noteStatus(trailers));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => {});
    session.on('error', () => {});
    stream.once('close', () => {
      this.slot.close();
      session.close();
    });
  }

  /** `headers` go with the call's own, e.g. `grpc-encoding: gzip` for compressed messages. */
  static async connect(target: Target, headers: http2.OutgoingHttpHeaders = {}): Promise<RawGrpcLink> {
    const url = new URL(target.url);
    const secure = url.protocol === 'grpcs:';
    const session = http2.connect(`${secure ? 'https' : 'http'}://${url.host}`, secure ? tlsOptions(target.tls) : {});
    session.on('error', () => {});
    await withTimeout(`connect to ${target.url}`, once(session, 'connect'));
    const stream = session.request(
      { ':method': 'POST', ':path': connectMethod.path, 'content-type': 'application/grpc', te: 'trailers', ...headers },
      { endStream: false },
    );
    return new RawGrpcLink(session, stream);
  }

  get isClosed(): boolean {
    return this.slot.closed || this.stream.closed || this.stream.destroyed;
  }

  start(sink: FrameSink): void {
    this.slot.start(sink);
  }

  send(codecByte: number, body: Uint8Array): void {
    this.sendGrpcFrame(frameOf(codecByte, body));
  }

  /** One `Frame` message with any field values (an unknown codec, an empty body). */
  sendGrpcFrame(frame: GrpcFrame): void {
    if (this.stream.destroyed || this.stream.writableEnded) return;
    this.sendMessage(connectMethod.requestSerialize(frame), false);
  }

  /**
   * One gRPC message of exactly these bytes (a serialized Frame, or anything), with the
   * compressed flag as given: compressed, they are read in the call's `grpc-encoding`.
   */
  sendMessage(message: Uint8Array, compressed: boolean): void {
    if (this.stream.destroyed || this.stream.writableEnded) return;
    const prefix = Buffer.alloc(GRPC_PREFIX_BYTES);
    prefix.writeUInt8(compressed ? 1 : 0, 0);
    prefix.writeUInt32BE(message.length, 1);
    this.stream.write(Buffer.concat([prefix, message]));
  }

  async close(): Promise<void> {
    this.stream.end(); // half-close: the plane answers with its status
    await withTimeout('close', this.status);
  }

  destroy(): void {
    this.session.destroy();
  }

  pauseReading(): void {
    this.stream.pause();
  }

  resumeReading(): void {
    this.stream.resume();
  }

  /** The status ends the call, whatever our side does: end ours too, so the stream closes. */
  private noteStatus(headers: http2.IncomingHttpHeaders): void {
    const status = headers['grpc-status'];
    if (typeof status !== 'string') return;
    this.grpcStatus = Number(status);
    if (!this.stream.writableEnded) this.stream.end();
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= GRPC_PREFIX_BYTES) {
      const length = this.pending.readUInt32BE(1);
      if (this.pending.length < GRPC_PREFIX_BYTES + length) return;
      const message = this.pending.subarray(GRPC_PREFIX_BYTES, GRPC_PREFIX_BYTES + length);
      this.pending = this.pending.subarray(GRPC_PREFIX_BYTES + length);
      const frame = connectMethod.responseDeserialize(message);
      this.frames.push(frame);
      this.slot.frame(frame.encrypted ? frame.codec | 0x80 : frame.codec, frame.body);
    }
  }
}
