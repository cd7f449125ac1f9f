// A minimal control plane for agent tests: a real TCP server on port 0 that speaks the
// stream framing with the protocol's own FrameDecoder/encoder, validates what the agent
// sends, and lets a test script the plane's side message by message.
import net from 'node:net';
import { CODEC_JSON, CODEC_MSGPACK, decodeBody, encodeBody, type Codec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import type { EnvelopeOf, MessageData, NodeMessage, NodeMessageType, PlaneMessageType } from '../../protocol/messages.js';
import { validateNodeMessage } from '../../protocol/validator.js';

export interface Received {
  codecByte: number;
  message: NodeMessage;
}

export class PlaneConn {
  readonly received: Received[] = [];
  private readonly decoder = new FrameDecoder();
  private cursor = 0;
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk) =>
      this.decoder.push(chunk, (codecByte, body) => {
        // validateNodeMessage throws on anything off-schema, failing the test loudly.
        const message = validateNodeMessage(decodeBody(codecByte as Codec, body));
        this.received.push({ codecByte, message });
        this.notify();
      }),
    );
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    socket.on('error', () => {});
  }

  /** The next message of `type` after the previous `next`, skipping others (e.g. heartbeats). */
  async next<T extends NodeMessageType>(type: T, timeoutMs = 10_000): Promise<EnvelopeOf<T> & { codecByte: number }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.received.length) {
        const r = this.received[this.cursor++]!;
        if (r.message.type === type) return { ...(r.message as EnvelopeOf<T>), codecByte: r.codecByte };
      }
      if (this.closed) throw new Error(`connection closed while waiting for ${type}`);
      await this.change(until, `no ${type} within ${timeoutMs} ms`);
    }
  }

  /** Resolves once `done()` holds, checked on every message received; for messages in any order. */
  async until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!done()) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      await this.change(until, `not within ${timeoutMs} ms: ${what}`);
    }
  }

  /** Resolves at the next message or close; rejects with `failure` once `until` (ms since the epoch) passes. */
  private change(until: number, failure: string): Promise<void> {
    return afterNext(this.waiters, until, failure);
  }

  /** Messages of a type received so far, in order. */
  all<T extends NodeMessageType>(type: T): Array<EnvelopeOf<T>> {
    return this.received.filter((r) => r.message.type === type).map((r) => r.message as EnvelopeOf<T>);
  }

  send<T extends PlaneMessageType>(type: T, data: MessageData<T>, codec: Codec = CODEC_MSGPACK, replyTo?: string): void {
    const envelope: Record<string, unknown> = { type, data, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
    if (replyTo !== undefined) envelope.reply_to = replyTo;
    this.sendRaw(codec, encodeBody(codec, envelope));
  }

  sendRaw(codecByte: number, body: Uint8Array): void {
    this.socket.write(encodeFrame(codecByte, body));
  }

  /** Drops the connection as a crashing plane would. */
  drop(): void {
    this.socket.destroy();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export class FakePlane {
  readonly conns: PlaneConn[] = [];
  private waiters: Array<(c: PlaneConn) => void> = [];
  private taken = 0;

  private constructor(private readonly server: net.Server) {
    server.on('connection', (socket) => {
      const conn = new PlaneConn(socket);
      this.conns.push(conn);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w(conn);
    });
  }

  /** Listens on a free loopback TCP port, or on a Unix socket at `path`. */
  static async start(options: { path?: string } = {}): Promise<FakePlane> {
    const server = net.createServer();
    await new Promise<void>((resolve) => {
      if (options.path === undefined) server.listen(0, '127.0.0.1', resolve);
      else server.listen(options.path, resolve);
    });
    return new FakePlane(server);
  }

  get url(): string {
    const address = this.server.address();
    if (typeof address === 'string') return `unix://${address}`;
    return `tcp://127.0.0.1:${(address as net.AddressInfo).port}`;
  }

  /** The next connection the agent opens (in order of arrival). */
  async nextConnection(timeoutMs = 10_000): Promise<PlaneConn> {
    const until = Date.now() + timeoutMs;
    while (this.taken >= this.conns.length) {
      await afterNext(this.waiters, until, 'agent did not connect');
    }
    return this.conns[this.taken++]!;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.drop();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export { CODEC_JSON, CODEC_MSGPACK };

/**
 * Resolves when the next of `waiters` is called (an event: a frame, a close, a connection);
 * the timer is only a deadline, after which the wait fails the test.
 */
function afterNext(waiters: { push(waiter: () => void): number }, until: number, failure: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(failure)), Math.max(0, until - Date.now()));
    waiters.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
