// A Connection over one WebSocket (`ws`): one message is one frame body, a text message is
// JSON (codec 0x01) and a binary message MessagePack (0x02), as PROTOCOL.md section 1 says.
// With encryption on (section 6), every message is binary: the codec byte (0x80 set), then
// the encrypted body. A plaintext MessagePack map can start with the same byte, so only the
// encryption layer can say which reading applies: it calls `useEncryptedFraming`.
// The socket stays paused until `start`; the few messages `ws` had already parsed from the
// last read wait in a short queue, so an owner that starts late loses nothing and a peer
// cannot grow that queue.
import { WebSocket, type RawData } from 'ws';
import { CODEC_JSON, CODEC_MSGPACK, ENCRYPTED_BIT, isKnownCodecByte } from '../protocol/codec.js';
import { MusterError } from '../protocol/errors.js';
import { CloseLatch } from './close-latch.js';
import { CLOSE_TIMEOUT_MS, nextConnectionId } from './stream-connection.js';
import type { Connection, FrameSink } from './transport.js';
import { ReadPause } from './read-pause.js';

/** The WebSocket subprotocol of PROTOCOL.md: offered by clients, required by listeners. */
export const WS_SUBPROTOCOL = 'muster.v1';
/** The path a listener serves when its URL names none. */
export const WS_PATH = '/v1/connect';

// Close codes that mean "we are done", not a failure (RFC 6455 section 7.4.1; 1005 = no code given).
const NORMAL_CLOSE_CODES = new Set([1000, 1001, 1005]);

export interface WebSocketConnectionOptions {
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** `host:port` of the peer. */
  remoteAddress: string;
  /** Names of the peer's verified TLS client certificate; none otherwise. */
  peerNames?: readonly string[];
  /**
   * Ping the peer this often once started, and terminate it when the previous ping went
   * unanswered. 0 leaves the keepalive to the peer (the dialing side answers pings only).
   */
  pingIntervalMs?: number;
  /** How long the close handshake may take; default CLOSE_TIMEOUT_MS. */
  closeTimeoutMs?: number | undefined;
}

export class WebSocketConnection implements Connection {
  readonly id = nextConnectionId();
  readonly remoteAddress: string;
  readonly peerNames: readonly string[];
  private readonly maxFrameBytes: number;
  private readonly maxSendBufferBytes: number;
  private readonly pingIntervalMs: number;
  private readonly closeTimeoutMs: number;
  private readonly readPause = new ReadPause(
    () => this.ws.pause(),
    () => {
      if (this.ws.readyState !== WebSocket.CLOSED) this.ws.resume();
    },
  );
  private sink: FrameSink | undefined;
  // Messages parsed before `start`: at most what one socket read held, as the socket is paused.
  private early: { data: Buffer; isBinary: boolean }[] = [];
  // Cleared on a framing error or a throwing sink: later messages are dropped until the owner closes.
  private receiving = true;
  private wsClosed = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private pongReceived = true;
  // Set by the encryption layer: binary messages led by 0x81 or 0x82 are encrypted frames.
  private encryptedFraming = false;
  private readonly latch = new CloseLatch();

  constructor(
    private readonly ws: WebSocket,
    options: WebSocketConnectionOptions,
  ) {
    this.remoteAddress = options.remoteAddress;
    this.peerNames = options.peerNames ?? [];
    this.maxFrameBytes = options.maxFrameBytes;
    this.maxSendBufferBytes = options.maxSendBufferBytes;
    this.pingIntervalMs = options.pingIntervalMs ?? 0;
    this.closeTimeoutMs = options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
    ws.pause();
    ws.on('message', this.onMessage);
    ws.on('pong', this.onPong);
    ws.on('error', this.onError);
    ws.on('close', this.onClose);
  }

  get isClosed(): boolean {
    return this.wsClosed || this.ws.readyState !== WebSocket.OPEN;
  }

  start(sink: FrameSink): void {
    if (this.sink !== undefined) throw new Error(`${this.label}: already started`);
    this.sink = sink;
    const early = this.early;
    this.early = [];
    for (const { data, isBinary } of early) this.deliver(data, isBinary);
    if (this.wsClosed) {
      process.nextTick(() => this.reportClosed());
      return;
    }
    this.ws.resume();
    // Not when an early frame already made the owner close or abort.
    if (!this.isClosed) this.startKeepalive();
  }

  useEncryptedFraming(): void {
    this.encryptedFraming = true;
  }

  send(codecByte: number, body: Uint8Array): void {
    if (this.isClosed) return;
    if (codecByte === CODEC_JSON) this.ws.send(body, { binary: false });
    else if (codecByte === CODEC_MSGPACK) this.ws.send(body, { binary: true });
    else if (isEncryptedCodecByte(codecByte)) this.ws.send(withCodecByte(codecByte, body), { binary: true });
    else throw new Error(`${this.label}: cannot send codec byte 0x${codecByte.toString(16)} over WebSocket`);
    if (this.ws.bufferedAmount > this.maxSendBufferBytes) {
      this.abort(new Error(`${this.label}: send buffer passed ${this.maxSendBufferBytes} bytes; the peer is not reading`));
    }
  }

  pauseReading(ms: number): void {
    if (this.sink === undefined || this.isClosed) return;
    this.readPause.for(ms);
  }

  close(): Promise<void> {
    // The close handshake needs the peer's close frame read: a pause ends here.
    this.readPause.end();
    if (!this.wsClosed && !this.latch.closing) {
      // A connection never started must still read the peer's close frame; drop its messages.
      if (this.sink === undefined) {
        this.receiving = false;
        this.early = [];
        this.ws.resume();
      }
      this.stopKeepalive();
      this.ws.close(1000);
      this.latch.beginClose(this.closeTimeoutMs, () => {
        this.latch.fail(new Error(`${this.label}: close handshake timed out after ${this.closeTimeoutMs} ms`));
        this.ws.terminate();
      });
    }
    return this.latch.done;
  }

  private readonly onMessage = (data: RawData, isBinary: boolean): void => {
    // The default binaryType: every message is one Buffer, fragments already joined.
    const body = data as Buffer;
    if (this.sink === undefined) {
      if (this.receiving) this.early.push({ data: body, isBinary });
      return;
    }
    this.deliver(body, isBinary);
  };

  private deliver(message: Buffer, isBinary: boolean): void {
    if (!this.receiving) return;
    let codecByte = isBinary ? CODEC_MSGPACK : CODEC_JSON;
    let body = message;
    // Anything else on an encrypted connection is a plaintext frame: the encryption layer
    // answers it with decrypt_failed.
    if (this.encryptedFraming && isBinary && message.length > 0 && isEncryptedCodecByte(message[0]!)) {
      codecByte = message[0]!;
      body = message.subarray(1);
    }
    // The frame length a stream transport would see: the codec byte and the body.
    const frameLength = body.length + 1;
    if (frameLength > this.maxFrameBytes) {
      this.receiving = false;
      this.sink!.error(new MusterError('frame_too_large', `frame of ${frameLength} bytes exceeds ${this.maxFrameBytes}`));
      return;
    }
    try {
      this.sink!.frame(codecByte, body);
    } catch (cause) {
      // The owner's bug; contain it to this connection.
      this.receiving = false;
      this.abort(new Error(`${this.label}: frame handler threw`, { cause }));
    }
  }

  /**
   * The listening side pings every `pingIntervalMs`; a peer that has not answered the previous
   * ping by the next one is terminated, so a half-open connection (peer host gone, no FIN)
   * is noticed within two intervals. Started with the socket flowing, as pongs must be read.
   */
  private startKeepalive(): void {
    const ms = this.pingIntervalMs;
    if (ms <= 0) return;
    this.pingTimer = setInterval(() => {
      if (!this.pongReceived) {
        this.abort(new Error(`${this.label}: no pong within ${ms} ms; the peer is gone`));
        return;
      }
      this.pongReceived = false;
      this.ws.ping();
    }, ms);
    this.pingTimer.unref();
  }

  private stopKeepalive(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private readonly onPong = (): void => {
    this.pongReceived = true;
  };

  private readonly onError = (err: Error): void => {
    // e.g. a message over maxPayload: `ws` closes with 1009 and says why here.
    this.latch.fail(err);
  };

  private readonly onClose = (code: number, reason: Buffer): void => {
    this.wsClosed = true;
    this.stopKeepalive();
    if (!NORMAL_CLOSE_CODES.has(code)) {
      const why = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
      this.latch.fail(new Error(`${this.label}: closed with code ${code}${why}`));
    }
    this.latch.settle();
    if (this.sink !== undefined) this.reportClosed();
  };

  private get label(): string {
    return `connection ${this.id} to ${this.remoteAddress}`;
  }

  private abort(err: Error): void {
    this.latch.fail(err);
    this.stopKeepalive();
    this.ws.terminate();
  }

  private reportClosed(): void {
    this.latch.report(this.sink!);
  }
}

/** 0x81 or 0x82: an encrypted JSON or MessagePack frame. */
function isEncryptedCodecByte(byte: number): boolean {
  return (byte & ENCRYPTED_BIT) !== 0 && isKnownCodecByte(byte);
}

/** One binary message: the codec byte, then the body. */
function withCodecByte(codecByte: number, body: Uint8Array): Buffer {
  const message = Buffer.allocUnsafe(body.length + 1);
  message[0] = codecByte;
  message.set(body, 1);
  return message;
}
