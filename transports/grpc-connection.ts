// A Connection over one `NodeLink/Connect` call, on either side: each received Frame is one
// protocol frame, each sent frame one Frame. The call's readable side stays paused until
// `start`, so frames that arrive earlier wait in grpc-js: on the server in the call's buffer
// (16 messages) and then in HTTP/2 flow control; on the client grpc-js 1.14 keeps reading
// into a queue of its own, so an owner must start a dialed connection at once.
// gRPC's own message compression (PROTOCOL.md section 8) is per message on the dialing side:
// the channel offers gzip, and each write says whether its message may be compressed.
import type { Readable, Writable } from 'node:stream';
import { MusterError } from '../protocol/errors.js';
import { CloseLatch } from './close-latch.js';
import { codecByteOf, frameOf, type GrpcFrame } from './grpc-frame.js';
import { CLOSE_TIMEOUT_MS, nextConnectionId } from './stream-connection.js';
import type { Connection, FrameSink } from './transport.js';
import { ReadPause } from './read-pause.js';

/** What both sides' calls are: grpc-js's object-mode duplex streams of Frames. */
export type GrpcCall = Pick<Readable, 'on' | 'destroyed' | 'pause' | 'resume'> &
  Pick<Writable, 'writableEnded' | 'writableFinished'> & {
    /** grpc-js reads a write's flags (grpc.WriteFlags) from the stream's `encoding` argument. */
    write(frame: GrpcFrame, flags: BufferEncoding, callback: () => void): boolean;
    end(): void;
  };

/**
 * grpc-js's `WriteFlags.NoCompress` (a const enum there, so not importable): a message written
 * with it goes uncompressed whatever the channel's compression. grpc-js takes a write's flags
 * from the `encoding` argument of the object-mode stream (`Number(encoding)`).
 */
const NO_COMPRESS = '2' as BufferEncoding;
/** No flags: the message is compressed when the channel compresses (and the peer accepts it). */
const COMPRESSIBLE = '0' as BufferEncoding;

/** The side-specific ways to end a call; the rest is the same on server and client. */
export interface GrpcCallSide {
  /** `server` (the handler's call) or `client` (the dialed call). */
  readonly kind: 'server' | 'client';
  /** Abandons the call at once: RST_STREAM on the server, cancel on the client. */
  cancel(): void;
  /** Read once the call is over without an error of its own: why it ended abnormally, or undefined. */
  abnormalEnd(): string | undefined;
  /** Runs once the call is over, e.g. to close the client's channel. */
  onDone?(): void;
}

export interface GrpcConnectionOptions {
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** The largest message grpc-js will send; a bigger frame closes the connection here, with a clear reason. */
  maxMessageBytes: number;
  remoteAddress: string;
  peerNames?: readonly string[];
  /** How long a graceful close may take before the call is cut; default CLOSE_TIMEOUT_MS. */
  closeTimeoutMs?: number | undefined;
}

export class GrpcConnection implements Connection {
  readonly id = nextConnectionId();
  readonly remoteAddress: string;
  readonly peerNames: readonly string[];
  private sink: FrameSink | undefined;
  // Cleared on a bad frame or a throwing sink: later frames are drained and dropped.
  private receiving = true;
  private queuedBytes = 0;
  // The call's own error: a non-OK status on the client, a destroy with an error on the server.
  private callError: Error | undefined;
  // Client side: the server's status arrived, so the call is over whatever our side does.
  private statusReceived = false;
  private done = false;
  // Bodies from this size on may be compressed (the dialing side, once told); none before.
  private compressMin = Infinity;
  private readonly latch = new CloseLatch();

  private readonly readPause = new ReadPause(
    () => this.call.pause(),
    () => {
      if (!this.call.destroyed) this.call.resume();
    },
  );

  constructor(
    private readonly call: GrpcCall,
    private readonly side: GrpcCallSide,
    private readonly options: GrpcConnectionOptions,
  ) {
    this.remoteAddress = options.remoteAddress;
    this.peerNames = options.peerNames ?? [];
    call.on('error', this.onError);
    call.on('status', this.onStatus);
    call.on('end', this.onEnd);
    call.on('close', this.onFinished);
  }

  get isClosed(): boolean {
    return this.done || this.statusReceived || this.call.destroyed || this.call.writableEnded;
  }

  start(sink: FrameSink): void {
    if (this.sink !== undefined) throw new Error(`${this.label}: already started`);
    this.sink = sink;
    if (this.done) {
      process.nextTick(() => this.reportClosed());
      return;
    }
    this.call.on('data', this.onFrame); // switches the call to flowing: buffered frames come first
  }

  send(codecByte: number, body: Uint8Array, compressible = true): void {
    if (this.isClosed) return;
    const limit = this.options.maxMessageBytes;
    if (body.length > limit) {
      this.abort(new Error(`${this.label}: frame of ${body.length} bytes exceeds the gRPC message limit of ${limit}`));
      return;
    }
    // Object mode counts messages, not bytes: count the bytes handed over and not yet written.
    const size = body.length;
    this.queuedBytes += size;
    const flags = compressible && size >= this.compressMin ? COMPRESSIBLE : NO_COMPRESS;
    this.call.write(frameOf(codecByte, body), flags, () => (this.queuedBytes -= size));
    const max = this.options.maxSendBufferBytes;
    if (this.queuedBytes > max) {
      this.abort(new Error(`${this.label}: send buffer passed ${max} bytes; the peer is not reading`));
    }
  }

  /**
   * Bodies of at least `minBytes` may go compressed from now on. Only a dialed channel
   * compresses (grpc-js servers never compress what they send), and only once the server's
   * `grpc-accept-encoding` named gzip: grpc-js then honours each write's flags.
   */
  compressFrom(minBytes: number): void {
    this.compressMin = Math.max(0, minBytes);
  }

  pauseReading(ms: number): void {
    if (this.sink === undefined || this.isClosed) return;
    // Out of flowing mode: grpc-js stops reading the HTTP/2 stream once its buffer is full,
    // and HTTP/2 flow control then holds the peer back.
    this.readPause.for(ms);
  }

  close(): Promise<void> {
    // The peer's end of the call must be read to finish: a pause ends here.
    this.readPause.end();
    if (!this.done && !this.latch.closing) {
      // Flushes what is queued, then half-closes (client) or sends status OK (server).
      if (!this.call.writableEnded) this.call.end();
      const closeTimeoutMs = this.options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
      this.latch.beginClose(closeTimeoutMs, () => {
        this.latch.fail(new Error(`${this.label}: close timed out after ${closeTimeoutMs} ms with unsent data`));
        this.side.cancel();
      });
    }
    return this.latch.done;
  }

  private readonly onFrame = (frame: GrpcFrame): void => {
    if (!this.receiving) return;
    const error = this.check(frame);
    if (error !== undefined) {
      this.receiving = false;
      this.sink!.error(error);
      return;
    }
    try {
      this.sink!.frame(codecByteOf(frame)!, frame.body);
    } catch (cause) {
      // The owner's bug; contained to this connection.
      this.receiving = false;
      this.abort(new Error(`${this.label}: frame handler threw`, { cause }));
    }
  };

  private check(frame: GrpcFrame): MusterError | undefined {
    // The frame length a stream transport would see (codec byte and body), as WebSocket does.
    const frameLength = frame.body.length + 1;
    if (frameLength > this.options.maxFrameBytes) {
      return new MusterError('frame_too_large', `frame of ${frameLength} bytes exceeds ${this.options.maxFrameBytes}`);
    }
    if (codecByteOf(frame) === undefined) {
      const name = frame.codec === 0 ? 'CODEC_UNSPECIFIED' : `codec ${frame.codec}`;
      return new MusterError('unsupported_codec', `unsupported ${name}${frame.encrypted ? ' (encrypted)' : ''}`);
    }
    return undefined;
  }

  // A client call reports a non-OK status as an error, then 'status', just before its readable side ends.
  private readonly onError = (err: Error): void => {
    this.callError ??= err;
  };

  private readonly onStatus = (): void => {
    this.statusReceived = true;
  };

  private readonly onEnd = (): void => {
    if (this.side.kind === 'client') {
      this.onFinished(); // the status arrived: the call is over, whatever our writable side does
    } else if (!this.call.writableEnded) {
      this.call.end(); // the node half-closed: answer with status OK once our frames are out
    }
  };

  private readonly onFinished = (): void => {
    if (this.done) return;
    this.done = true;
    if (this.callError !== undefined) {
      this.latch.fail(new Error(`${this.label}: ${this.callError.message}`, { cause: this.callError }));
    } else {
      const abnormal = this.side.abnormalEnd();
      if (abnormal !== undefined) this.latch.fail(new Error(`${this.label}: ${abnormal}`));
    }
    this.side.onDone?.();
    this.latch.settle();
    if (this.sink !== undefined) this.reportClosed();
  };

  private get label(): string {
    return `grpc connection ${this.id} to ${this.remoteAddress}`;
  }

  private abort(err: Error): void {
    this.latch.fail(err);
    this.side.cancel();
  }

  private reportClosed(): void {
    this.latch.report(this.sink!);
  }
}
