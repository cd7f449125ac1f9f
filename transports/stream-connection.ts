// A Connection over one stream socket (TCP, Unix, and TLS on top of TCP): bytes in are split
// into frames by the protocol's FrameDecoder, frames out are written with its encoder.
// The socket stays paused until `start`, so frames that arrive earlier wait in the socket's
// own buffers (bounded by the kernel), not in ours.
import type { Socket } from 'node:net';
import { FrameDecoder, type FrameHandler } from '../protocol/frame-decoder.js';
import { encodePooledFrame } from '../protocol/frame-encoder.js';
import { toMusterError } from '../protocol/errors.js';
import { CloseLatch } from './close-latch.js';
import { httpRefusal, HttpPeerError, looksLikeHttpRequest, looksLikeHttpResponse } from './http-sniff.js';
import type { Connection, FrameSink } from './transport.js';
import { ReadPause } from './read-pause.js';

/** How long `close()` waits for queued writes to flush before it drops them. */
export const CLOSE_TIMEOUT_MS = 2_000;

let lastConnectionId = 0;

/** A process-unique connection id (`c-1`, `c-2`, ...), shared by every transport for `conn_id` in logs. */
export function nextConnectionId(): string {
  lastConnectionId += 1;
  return `c-${lastConnectionId}`;
}

export interface StreamConnectionOptions {
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** `host:port` for TCP, the socket path for Unix. */
  remoteAddress: string;
  /** Names of the peer's verified TLS client certificate; none for plain sockets. */
  peerNames?: readonly string[];
  /** A listener's answer to an HTTP request (sent as an HTTP 400, then closed); none: treated as bad frames. */
  httpNotice?: string;
  /** How long a graceful close may take before the socket is cut; default CLOSE_TIMEOUT_MS. */
  closeTimeoutMs?: number | undefined;
}

export class StreamConnection implements Connection {
  readonly id = nextConnectionId();
  readonly remoteAddress: string;
  readonly peerNames: readonly string[];
  private readonly decoder: FrameDecoder;
  private readonly maxSendBufferBytes: number;
  private sink: FrameSink | undefined;
  // Set on a framing error or a throwing sink: the byte stream can no longer be trusted.
  private receiving = true;
  private socketClosed = false;
  private firstBytes = true;
  private readonly httpNotice: string | undefined;
  private readonly latch = new CloseLatch();

  private readonly closeTimeoutMs: number;
  private readonly readPause = new ReadPause(
    () => this.socket.pause(),
    () => {
      if (!this.socket.destroyed) this.socket.resume();
    },
  );

  constructor(
    private readonly socket: Socket,
    options: StreamConnectionOptions,
  ) {
    this.remoteAddress = options.remoteAddress;
    this.peerNames = options.peerNames ?? [];
    this.httpNotice = options.httpNotice;
    this.maxSendBufferBytes = options.maxSendBufferBytes;
    this.closeTimeoutMs = options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
    this.decoder = new FrameDecoder(options.maxFrameBytes);
    // Frames are small and latency matters more than packet count; a no-op on Unix sockets.
    socket.setNoDelay(true);
    socket.pause();
    socket.on('error', this.onError);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
  }

  get isClosed(): boolean {
    // readableEnded: the peer has closed its side, and without half-open sockets so have we.
    return this.socketClosed || this.socket.destroyed || this.socket.writableEnded || this.socket.readableEnded;
  }

  start(sink: FrameSink): void {
    if (this.sink !== undefined) throw new Error(`${this.label}: already started`);
    this.sink = sink;
    if (this.socketClosed) {
      process.nextTick(() => this.reportClosed());
      return;
    }
    this.socket.on('data', this.onData);
    this.socket.resume();
  }

  send(codecByte: number, body: Uint8Array): void {
    if (this.isClosed) return;
    this.socket.write(encodePooledFrame(codecByte, body));
    if (this.socket.writableLength > this.maxSendBufferBytes) {
      this.abort(new Error(`${this.label}: send buffer passed ${this.maxSendBufferBytes} bytes; the peer is not reading`));
    }
  }

  pauseReading(ms: number): void {
    if (this.sink === undefined || this.isClosed) return;
    this.readPause.for(ms);
  }

  close(): Promise<void> {
    // A close must read the peer's FIN: a pause ends here.
    this.readPause.end();
    if (!this.socket.destroyed && !this.latch.closing) {
      // A connection never started must still read the peer's FIN to finish closing; drop its data.
      if (this.sink === undefined) this.socket.resume();
      this.socket.end();
      const closeTimeoutMs = this.closeTimeoutMs;
      this.latch.beginClose(closeTimeoutMs, () => {
        if (!this.socket.writableFinished) {
          this.latch.fail(new Error(`${this.label}: close timed out after ${closeTimeoutMs} ms with unsent data`));
        }
        this.socket.destroy();
      });
    }
    return this.latch.done;
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.receiving) return; // drained and dropped until the owner closes: never buffered
    if (this.firstBytes) {
      this.firstBytes = false;
      if (this.refusedHttp(chunk)) return;
    }
    try {
      this.decoder.push(chunk, this.deliver);
    } catch (err) {
      this.receiving = false;
      this.sink!.error(toMusterError(err));
    }
  };

  private readonly deliver: FrameHandler = (codecByte, body) => {
    if (!this.receiving) return;
    try {
      this.sink!.frame(codecByte, body);
    } catch (cause) {
      // The owner's bug; contain it to this connection rather than desynchronise the framing.
      this.receiving = false;
      this.abort(new Error(`${this.label}: frame handler threw`, { cause }));
    }
  };

  /** HTTP instead of frames (http-sniff.ts): a request is answered and closed, a response reported. */
  private refusedHttp(chunk: Buffer): boolean {
    if (this.httpNotice !== undefined && looksLikeHttpRequest(chunk)) {
      this.receiving = false;
      this.socket.end(httpRefusal(this.httpNotice));
      return true;
    }
    if (!looksLikeHttpResponse(chunk)) return false;
    this.receiving = false;
    this.sink!.error(new HttpPeerError());
    return true;
  }

  private readonly onError = (err: Error): void => {
    this.latch.fail(err);
  };

  /**
   * The peer closed its side. With nothing of ours left unwritten there is nothing to finish:
   * the socket is destroyed at once, which spares the shutdown call and the writable stream's
   * ending (about a tenth of the plane's time in a reconnect storm, where every old connection
   * closes this way). Data still queued goes out first, through net's own end.
   */
  private readonly onEnd = (): void => {
    if (this.socket.writableLength === 0) this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.socketClosed = true;
    this.latch.settle();
    if (this.sink !== undefined) this.reportClosed();
  };

  private get label(): string {
    return `connection ${this.id} to ${this.remoteAddress}`;
  }

  private abort(err: Error): void {
    this.latch.fail(err);
    this.socket.destroy();
  }

  private reportClosed(): void {
    this.latch.report(this.sink!);
  }
}

export interface DialStreamOptions {
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** Give up connecting after this long; 0 or Infinity leaves it to the OS. */
  connectTimeoutMs: number;
  /** What error messages call the target, e.g. the URL. */
  target: string;
  /** The event that means the socket is ready: `connect`, or `secureConnect` for TLS. */
  readyEvent?: string;
  /** The peer's address for logs, read once connected. */
  peerAddress(socket: Socket): string;
}

/** Waits for a socket that is connecting (`net.connect(...)`) and wraps it; rejects with an Error on failure. */
export function connectStream(socket: Socket, options: DialStreamOptions): Promise<StreamConnection> {
  const readyEvent = options.readyEvent ?? 'connect';
  return new Promise((resolve, reject) => {
    const settle = (): void => {
      clearTimeout(timer);
      socket.off(readyEvent, onReady);
      socket.off('error', onError);
    };
    const fail = (err: Error): void => {
      settle();
      socket.on('error', () => {}); // a late error of a socket we gave up on must not crash the process
      socket.destroy();
      reject(err);
    };
    const onError = (err: Error): void =>
      fail(new Error(`connect to ${options.target} failed: ${err.message}`, { cause: err }));
    const onReady = (): void => {
      settle();
      const { maxFrameBytes, maxSendBufferBytes } = options;
      const remoteAddress = options.peerAddress(socket);
      resolve(new StreamConnection(socket, { maxFrameBytes, maxSendBufferBytes, remoteAddress }));
    };
    const ms = options.connectTimeoutMs;
    const timer =
      ms > 0 && Number.isFinite(ms)
        ? setTimeout(() => fail(new Error(`connect to ${options.target} timed out after ${ms} ms`)), ms)
        : undefined;
    socket.once(readyEvent, onReady);
    socket.once('error', onError);
  });
}
