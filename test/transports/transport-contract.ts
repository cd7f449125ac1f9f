// The Transport contract: every transport (tcp, unix, tls, ws, wss, grpc, grpcs) runs this suite over
// real sockets, through the registry as users reach it (`transports/builtin.js`), so a node
// session can rely on one behaviour whatever the scheme. A fixture says how to listen and dial
// and what the transport can and cannot do (a message transport cannot split a frame); each
// transport's own test file calls `transportContract` and keeps its special cases beside it.
// Misbehaving peers are the conformance suite's raw links, which share no code with transports/.
import { afterEach, describe, expect, it } from 'vitest';
import { once } from 'node:events';
import '../../transports/builtin.js';
import {
  transportFor,
  type ClientTlsOptions,
  type Connection,
  type ListenOptions,
  type ServerTlsOptions,
  type Transport,
  type TransportServer,
} from '../../transports/transport.js';
import { connectMethod, frameOf } from '../../transports/grpc-frame.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { dialRaw, type RawLink, type RawStreamLink } from '../conformance/raw-links.js';
import type { TransportKind } from '../conformance/plane-fixture.js';
import { RecordingSink } from './recording-sink.js';

export const MAX_FRAME = 64 * 1024;

/** How one transport is listened on and dialed, and what it can do. */
export interface TransportFixture {
  /** The URL scheme, also the suite's name. */
  name: string;
  kind: TransportKind;
  /** A fresh URL to listen on (port 0, or a new socket path). */
  listenUrl(): string;
  /** What the listener's `url` looks like once listening. */
  urlPattern: RegExp;
  /** The accepted connection's `remoteAddress`. */
  acceptedAddress: RegExp;
  /** The dialed connection's `remoteAddress`, from the listener's URL. */
  dialedAddress(serverUrl: URL): string;
  /** maxSendBufferBytes on both sides. */
  sendLimit: number;
  /** The limit for a burst of sends both ways in one turn (default `sendLimit`). */
  burstSendLimit?: number;
  serverTls?: ServerTlsOptions;
  clientTls?: ClientTlsOptions;
  /**
   * Whether a plain connection carries the encrypted codec bytes (0x81, 0x82) as they are.
   * Not WebSocket: there their message form is chosen by the encryption layer.
   */
  carriesEncryptedCodecBytes: boolean;
  /** A byte stream (length-prefixed frames): a peer can split a frame or coalesce frames into one write. */
  byteStream: boolean;
  /** How a dial to a closed listener fails. */
  refusedDial: RegExp;
  /** Drops a raw link with no goodbye; default `link.destroy()`. */
  vanish?(link: RawLink): void;
  /** What the listener's `closed` says when its peer vanished, when it says why. */
  vanishReason?: RegExp;
}

export interface Peer {
  conn: Connection;
  sink: RecordingSink;
}

export interface HarnessOptions {
  /** Default true: start every accepted connection at once. */
  autoStart?: boolean;
  /** Default the fixture's. */
  tls?: ServerTlsOptions;
  /** maxSendBufferBytes on both sides; default the fixture's `sendLimit`. */
  sendLimit?: number;
  /** A transport built with other settings, instead of the registry's. */
  transport?: Transport;
  keepaliveIntervalMs?: ListenOptions['keepaliveIntervalMs'];
  /** The listener may agree to its transport's own compression (WebSocket permessage-deflate). */
  compression?: boolean;
}

/** A listening server whose connections are collected (and started unless told otherwise). */
export class Harness {
  server!: TransportServer;
  readonly accepted: Peer[] = [];
  private readonly dialed: Connection[] = [];
  private readonly raws: RawLink[] = [];
  private readonly cleanups: (() => unknown)[] = [];
  private waiters: (() => void)[] = [];
  private sendLimit: number;

  constructor(readonly fixture: TransportFixture) {
    this.sendLimit = fixture.sendLimit;
  }

  async listen(url = this.fixture.listenUrl(), options: HarnessOptions = {}): Promise<this> {
    this.sendLimit = options.sendLimit ?? this.fixture.sendLimit;
    const parsed = new URL(url);
    this.server = await (options.transport ?? transportFor(parsed)).listen(parsed, {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: this.sendLimit,
      tls: options.tls ?? this.fixture.serverTls,
      keepaliveIntervalMs: options.keepaliveIntervalMs,
      compression: options.compression === true,
      onConnection: (conn) => {
        const sink = new RecordingSink();
        if (options.autoStart !== false) conn.start(sink);
        this.accepted.push({ conn, sink });
        for (const w of this.waiters.splice(0)) w();
      },
    });
    return this;
  }

  async nth(i: number): Promise<Peer> {
    while (this.accepted.length <= i) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.accepted[i]!;
  }

  /** Dials the listener (or `url`) with the fixture's client TLS unless told otherwise, and starts the connection. */
  async dial(options: { tls?: ClientTlsOptions; url?: string } = {}): Promise<Peer> {
    const conn = await this.dialOnly(options);
    const sink = new RecordingSink();
    conn.start(sink);
    return { conn, sink };
  }

  /** A dialed connection, not started. */
  async dialOnly(options: { tls?: ClientTlsOptions; url?: string } = {}): Promise<Connection> {
    const conn = await dial(new URL(options.url ?? this.server.url), {
      tls: options.tls ?? this.fixture.clientTls,
      sendLimit: this.sendLimit,
    });
    this.dialed.push(conn);
    return conn;
  }

  /** A raw link (`test/conformance/raw-links.ts`), to send what no Muster peer would. */
  async raw(): Promise<RawLink> {
    const link = await dialRaw({
      url: this.server.url,
      kind: this.fixture.kind,
      tls: this.fixture.clientTls,
      maxFrameBytes: MAX_FRAME,
    });
    this.raws.push(link);
    return link;
  }

  /** Runs `fn` when the harness closes, before its connections are closed. */
  onClose(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  /**
   * A round trip on a fresh connection to this listener. The process handles its sockets'
   * events in one loop, so by the time the answer is back every event already due on the
   * other connections (a second close, a late frame) has been handled: "nothing more happened"
   * by ordering, not by waiting.
   */
  async probe(): Promise<void> {
    const index = this.accepted.length;
    const client = await this.dial();
    const server = await this.nth(index);
    client.conn.send(CODEC_JSON, sample(0).body);
    await server.sink.until(() => server.sink.frames.length === 1);
    server.conn.send(CODEC_JSON, sample(0).body);
    await client.sink.until(() => client.sink.frames.length === 1);
  }

  /** Stops listening and closes every connection of this harness, as an owner must. */
  async close(): Promise<void> {
    for (const fn of this.cleanups.splice(0)) await fn();
    await this.server.close();
    for (const link of this.raws) link.destroy();
    await Promise.all([...this.dialed, ...this.accepted.map((a) => a.conn)].map((c) => c.close()));
  }
}

export function dial(url: URL, options: { tls?: ClientTlsOptions; sendLimit?: number; connectTimeoutMs?: number } = {}) {
  return transportFor(url).dial(url, {
    maxFrameBytes: MAX_FRAME,
    maxSendBufferBytes: options.sendLimit ?? 64 * 1024,
    connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
}

/** Frames as short comparable strings: toStrictEqual walks big Buffers byte by byte, slowly. */
export const digest = (frames: { codecByte: number; body: Uint8Array }[]): string[] =>
  frames.map((f) => `${f.codecByte}:${Buffer.from(f.body).toString('base64')}`);

export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Sample message `i`, in JSON for even `i` and MessagePack for odd. */
export const sample = (i: number): { codecByte: number; body: Uint8Array } => {
  const msgs = Object.values(sampleMessages());
  const codecByte = i % 2 === 0 ? CODEC_JSON : CODEC_MSGPACK;
  return { codecByte, body: encodeBody(codecByte, msgs[i % msgs.length]) };
};

/** Sends one frame on a raw link; resolves once its bytes were handed to the socket. */
export function sendFlushed(link: RawLink, codecByte: number, body: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (link.kind === 'stream') {
      void link.writeBytes(encodeFrame(codecByte, body)).then(() => resolve());
    } else if (link.kind === 'websocket') {
      link.ws.send(body, { binary: codecByte === CODEC_MSGPACK }, done);
    } else {
      const message = connectMethod.requestSerialize(frameOf(codecByte, body));
      const prefix = Buffer.alloc(5); // gRPC's length prefix: a compressed flag and a big-endian uint32
      prefix.writeUInt32BE(message.length, 1);
      link.stream.write(Buffer.concat([prefix, message]), done);
    }
  });
}

/** Registers the shared cases for one transport. */
export function transportContract(fixture: TransportFixture): void {
  describe(`Transport contract: ${fixture.name}`, () => {
    const harnesses: Harness[] = [];
    const harness = async (options: HarnessOptions = {}): Promise<Harness> => {
      const h = await new Harness(fixture).listen(undefined, options);
      harnesses.push(h);
      return h;
    };
    afterEach(async () => {
      for (const h of harnesses.splice(0)) await h.close();
    });

    it('serves a URL with the real address and carries frames both ways in both codecs, in order', async () => {
      const h = await harness({ sendLimit: fixture.burstSendLimit });
      expect(h.server.url).toMatch(fixture.urlPattern);
      const client = await h.dial();
      const server = await h.nth(0);
      expect(server.conn.remoteAddress).toMatch(fixture.acceptedAddress);
      expect(client.conn.remoteAddress).toBe(fixture.dialedAddress(new URL(h.server.url)));
      expect(server.conn.id).toMatch(/^c-\d+$/);
      expect(server.conn.id).not.toBe(client.conn.id);
      // No client certificate was asked for: nobody's names are vouched for.
      expect(server.conn.peerNames).toEqual([]);
      expect(client.conn.peerNames).toEqual([]);

      const sent = Array.from({ length: 40 }, (_, i) => sample(i));
      if (fixture.carriesEncryptedCodecBytes) {
        sent.push({ codecByte: 0x81, body: new Uint8Array(0) }); // encrypted JSON, empty body
        sent.push({ codecByte: 0x82, body: new Uint8Array(100).fill(7) }); // encrypted MessagePack
      }
      sent.push({ codecByte: CODEC_JSON, body: new Uint8Array(0) });
      sent.push({ codecByte: CODEC_MSGPACK, body: new Uint8Array(MAX_FRAME - 1).fill(9) }); // the largest allowed
      for (const f of sent) client.conn.send(f.codecByte, f.body);
      for (const f of sent) server.conn.send(f.codecByte, f.body);
      await server.sink.until(() => server.sink.frames.length === sent.length);
      await client.sink.until(() => client.sink.frames.length === sent.length);
      expect(digest(server.sink.frames)).toStrictEqual(digest(sent));
      expect(digest(client.sink.frames)).toStrictEqual(digest(sent));
      expect(server.sink.errors).toEqual([]);
      expect(client.sink.errors).toEqual([]);
    });

    it('delivers frames that arrived before start, first, once started', async () => {
      const h = await harness({ autoStart: false });
      const raw = await h.raw();
      // Each write has reached the socket (on loopback: the listener's side) before start.
      for (let i = 0; i < 5; i++) await sendFlushed(raw, sample(i).codecByte, sample(i).body);
      const server = await h.nth(0);
      expect(server.sink.frames).toEqual([]);
      server.conn.start(server.sink);
      raw.send(sample(5).codecByte, sample(5).body);
      await server.sink.until(() => server.sink.frames.length === 6);
      expect(digest(server.sink.frames)).toStrictEqual(digest([0, 1, 2, 3, 4, 5].map(sample)));
    });

    it('reports a frame over maxFrameBytes as frame_too_large, and the Error and close still reach the peer', async () => {
      // A frame as large as the usual test limit may sit in the queue whole (gRPC counts it so).
      const h = await harness({ sendLimit: fixture.burstSendLimit });
      const client = await h.dial();
      const server = await h.nth(0);
      // As on a stream transport, the codec byte counts: a body of maxFrameBytes is one too many.
      client.conn.send(CODEC_MSGPACK, new Uint8Array(MAX_FRAME));
      client.conn.send(CODEC_JSON, sample(0).body); // dropped: the connection is done
      await server.sink.until(() => server.sink.errors.length === 1);
      expect(server.sink.errors[0]!.code).toBe('frame_too_large');
      expect(server.sink.errors[0]!.fatal).toBe(true);

      const error = { type: 'Error', data: server.sink.errors[0]!.toData() };
      server.conn.send(CODEC_JSON, encodeBody(CODEC_JSON, error));
      await server.conn.close();
      await client.sink.until(() => client.sink.closes.length === 1);
      expect(client.sink.frames.map((f) => JSON.parse(f.body.toString('utf8')) as unknown)).toEqual([error]);
      expect(client.sink.closes).toEqual([undefined]);
      expect(server.sink.closes).toEqual([undefined]);
      expect(server.sink.frames).toEqual([]);
      expect(server.sink.errors).toHaveLength(1);
    });

    it.each(['client', 'server'])('reports closed exactly once on both sides when the %s closes', async (closer) => {
      const h = await harness();
      const client = await h.dial();
      const server = await h.nth(0);
      const [closing, other] = closer === 'client' ? [client, server] : [server, client];
      closing.conn.send(CODEC_JSON, sample(0).body); // queued before close: must still arrive
      await closing.conn.close();
      expect(closing.conn.isClosed).toBe(true);
      await other.sink.until(() => other.sink.closes.length > 0);
      expect(other.sink.frames).toHaveLength(1);
      expect(other.conn.isClosed).toBe(true);
      await closing.conn.close(); // idempotent
      await other.conn.close(); // closing an already closed connection resolves at once
      await h.probe();
      expect(closing.sink.closes).toEqual([undefined]);
      expect(other.sink.closes).toEqual([undefined]);
      closing.conn.send(CODEC_JSON, sample(0).body); // a no-op, not a throw
    });

    it('reports a peer that vanishes without a goodbye as closed, once', async () => {
      const h = await harness();
      const raw = await h.raw();
      const server = await h.nth(0);
      if (fixture.vanish !== undefined) fixture.vanish(raw);
      else raw.destroy();
      await server.sink.until(() => server.sink.closes.length > 0);
      await h.probe();
      expect(server.sink.closes).toHaveLength(1);
      if (fixture.vanishReason !== undefined) expect(server.sink.closes[0]?.message).toMatch(fixture.vanishReason);
      expect(server.conn.isClosed).toBe(true);
    });

    // Both cases send at the same pace: one 8 KiB frame per event-loop turn, so the socket
    // can flush between sends and only a peer that stops reading lets the buffer grow.
    const FRAME = new Uint8Array(8 * 1024).fill(1);

    it('closes a connection whose peer never reads once its send buffer passes the limit', async () => {
      const h = await harness();
      const raw = await h.raw();
      raw.pauseReading(); // the peer reads nothing
      const server = await h.nth(0);
      const cap = 256 * 1024 * 1024; // far beyond any socket buffer: reaching it means memory grew unbounded
      const rssBefore = process.memoryUsage().rss;
      let sent = 0;
      while (!server.conn.isClosed && sent < cap) {
        server.conn.send(CODEC_MSGPACK, FRAME);
        sent += FRAME.length;
        await nextTurn();
      }
      expect(server.conn.isClosed).toBe(true);
      // More than the limit went out (the kernel's buffers took it) before the queue grew past it.
      expect(sent).toBeGreaterThan(fixture.sendLimit);
      expect(sent).toBeLessThan(64 * 1024 * 1024);
      await server.sink.until(() => server.sink.closes.length > 0);
      expect(server.sink.closes).toHaveLength(1);
      expect(server.sink.closes[0]?.message).toMatch(
        new RegExp(`send buffer passed ${fixture.sendLimit} bytes; the peer is not reading`),
      );
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(128 * 1024 * 1024);
      server.conn.send(CODEC_MSGPACK, FRAME); // dropped, not queued
    });

    it('keeps a connection whose peer reads, at the same limit and pace', async () => {
      const h = await harness();
      const client = await h.dial();
      const server = await h.nth(0);
      const count = 1024; // 8 MiB in all, far past the limit
      for (let i = 0; i < count; i++) {
        server.conn.send(CODEC_MSGPACK, FRAME);
        await nextTurn();
      }
      await client.sink.until(() => client.sink.frames.length === count);
      expect(server.conn.isClosed).toBe(false);
      expect(server.sink.closes).toEqual([]);
    });

    it('closes only the connection whose frame handler throws, with the cause', async () => {
      const h = await harness({ autoStart: false });
      const a = await h.dial();
      a.conn.send(CODEC_JSON, sample(0).body);
      const first = await h.nth(0);
      const b = await h.dial();
      b.conn.send(CODEC_JSON, sample(0).body);
      const second = await h.nth(1);
      const bug = new Error('owner bug');
      first.conn.start({
        frame: () => {
          throw bug;
        },
        error: (e) => first.sink.error(e),
        closed: (e) => first.sink.closed(e),
      });
      second.conn.start(second.sink);
      await first.sink.until(() => first.sink.closes.length === 1);
      expect(first.sink.closes[0]?.cause).toBe(bug);
      await a.sink.until(() => a.sink.closes.length === 1);
      await second.sink.until(() => second.sink.frames.length === 1);
      expect(second.conn.isClosed).toBe(false);
      expect(b.conn.isClosed).toBe(false);
    });

    it('stops accepting on server close but leaves open connections to their owner', async () => {
      const h = await harness();
      const client = await h.dial();
      const server = await h.nth(0);
      await h.server.close();
      await expect(h.dial()).rejects.toThrow(fixture.refusedDial);
      // Frames both ways after the listener closed, as a Shutdown frame and a last result must.
      client.conn.send(CODEC_JSON, sample(0).body);
      await server.sink.until(() => server.sink.frames.length === 1);
      server.conn.send(CODEC_JSON, sample(2).body);
      await client.sink.until(() => client.sink.frames.length === 1);
      await server.conn.close();
      await client.sink.until(() => client.sink.closes.length === 1);
      expect(server.sink.closes).toEqual([undefined]);
      expect(client.sink.closes).toEqual([undefined]);
    });

    it('rejects a dial to an address nobody listens on', async () => {
      const h = await harness();
      await h.server.close();
      await expect(h.dial()).rejects.toThrow(fixture.refusedDial);
    });

    // A message transport cannot split a frame, nor coalesce frames: these have no meaning there.
    if (fixture.byteStream) describe('as a byte stream', () => {
      const stream = async (h: Harness): Promise<RawStreamLink> => (await h.raw()) as RawStreamLink;

      it('reassembles a frame written one byte at a time', async () => {
        const h = await harness();
        const raw = await stream(h);
        const server = await h.nth(0);
        const frames = [sample(0), sample(1)];
        const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
        for (let i = 0; i < bytes.length; i++) {
          await raw.writeBytes(bytes.subarray(i, i + 1));
          if (i % 16 === 0) await nextTurn(); // let the server read partial frames
        }
        await server.sink.until(() => server.sink.frames.length === 2);
        expect(digest(server.sink.frames)).toStrictEqual(digest(frames));
        expect(server.sink.errors).toEqual([]);
      });

      it('splits frames coalesced into one write', async () => {
        const h = await harness();
        const raw = await stream(h);
        const server = await h.nth(0);
        const frames = Array.from({ length: 200 }, (_, i) => sample(i));
        await raw.writeBytes(Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body))));
        await server.sink.until(() => server.sink.frames.length === 200);
        expect(digest(server.sink.frames)).toStrictEqual(digest(frames));
      });

      it('reports an oversize frame as frame_too_large from its header alone, and stops delivering', async () => {
        const h = await harness();
        const raw = await stream(h);
        const server = await h.nth(0);
        const ok = sample(0);
        const header = Buffer.alloc(5);
        header.writeUInt32BE(MAX_FRAME + 1, 0);
        header[4] = CODEC_JSON;
        const received: Buffer[] = [];
        raw.socket.on('data', (chunk: Buffer) => received.push(chunk));
        const ended = once(raw.socket, 'end');
        // A good frame, then only the header of a frame too large: no body byte is ever sent.
        await raw.writeBytes(Buffer.concat([encodeFrame(ok.codecByte, ok.body), header]));
        await server.sink.until(() => server.sink.errors.length === 1);
        expect(server.sink.errors[0]!.code).toBe('frame_too_large');
        expect(server.sink.frames).toHaveLength(1);

        // Whatever follows is dropped, and the owner's Error frame and close still reach the peer.
        await raw.writeBytes(encodeFrame(ok.codecByte, ok.body));
        server.conn.send(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Error', data: server.sink.errors[0]!.toData() }));
        await server.conn.close();
        await ended;
        expect(server.sink.frames).toHaveLength(1);
        expect(server.sink.errors).toHaveLength(1);
        expect(server.sink.closes).toEqual([undefined]);
        const reply = Buffer.concat(received);
        expect(reply.readUInt32BE(0)).toBe(reply.length - 4);
        expect(JSON.parse(reply.subarray(5).toString('utf8'))).toMatchObject({
          type: 'Error',
          data: { code: 'frame_too_large', fatal: true },
        });
      });

      it('reports an unknown codec byte as unsupported_codec', async () => {
        const h = await harness();
        const raw = await stream(h);
        const server = await h.nth(0);
        await raw.writeBytes(Uint8Array.of(0, 0, 0, 10, 0x07));
        await server.sink.until(() => server.sink.errors.length === 1);
        expect(server.sink.errors[0]!.code).toBe('unsupported_codec');
      });
    });
  });
}
