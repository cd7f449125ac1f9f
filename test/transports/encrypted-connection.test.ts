// Payload encryption as a layer over every transport (PROTOCOL.md sections 1 and 6), over real
// TCP, WebSocket and gRPC sockets on port 0: frames both ways in both codecs; the wire form
// checked with raw clients that share no code with transports/ (an encrypted stream frame, a
// binary WebSocket message led by its codec byte, a gRPC Frame with `encrypted: true`); and
// `decrypt_failed` for a plaintext frame, a tampered frame and a frame under another key.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import '../../transports/builtin.js';
import { encrypted } from '../../transports/encrypted-connection.js';
import { PayloadCipher } from '../../transports/payload-cipher.js';
import { transportFor, type Connection, type TransportServer } from '../../transports/transport.js';
import { dialRaw, type RawLink } from '../conformance/raw-links.js';
import type { TransportKind } from '../conformance/plane-fixture.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { RecordingSink } from './recording-sink.js';

const MAX_FRAME = 64 * 1024;
const SEND_LIMIT = 1024 * 1024;
const KEY = randomBytes(32);

const TRANSPORTS: { name: string; url: string; kind: TransportKind }[] = [
  { name: 'tcp', url: 'tcp://127.0.0.1:0', kind: 'stream' },
  { name: 'ws', url: 'ws://127.0.0.1:0/v1/connect', kind: 'websocket' },
  { name: 'grpc', url: 'grpc://127.0.0.1:0', kind: 'grpc' },
];

interface Peer {
  /** What the owner uses: the encrypted connection, or the plain one when not wrapped. */
  conn: Connection;
  /** The transport's own connection below it. */
  inner: Connection;
  sink: RecordingSink;
}

const servers: TransportServer[] = [];
const connections: Connection[] = [];
const rawLinks: RawLink[] = [];

afterEach(async () => {
  for (const link of rawLinks.splice(0)) link.destroy();
  await Promise.all(connections.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A listener whose every connection is encrypted with `KEY`, as the control plane's are. */
async function encryptedServer(url: string): Promise<{ server: TransportServer; next(): Promise<Peer> }> {
  const accepted: Peer[] = [];
  const waiters: (() => void)[] = [];
  const server = await transportFor(new URL(url)).listen(new URL(url), {
    maxFrameBytes: MAX_FRAME,
    maxSendBufferBytes: SEND_LIMIT,
    onConnection: (inner) => {
      connections.push(inner);
      const conn = encrypted(inner, new PayloadCipher(KEY));
      const sink = new RecordingSink();
      conn.start(sink);
      accepted.push({ conn, inner, sink });
      for (const w of waiters.splice(0)) w();
    },
  });
  servers.push(server);
  let taken = 0;
  return {
    server,
    async next() {
      while (accepted.length <= taken) await new Promise<void>((resolve) => waiters.push(resolve));
      return accepted[taken++]!;
    },
  };
}

/** A dialed connection, encrypted under `cipher` unless it is `'plain'`. */
async function dial(url: string, cipher: PayloadCipher | 'plain'): Promise<Peer> {
  const inner = await transportFor(new URL(url)).dial(new URL(url), {
    maxFrameBytes: MAX_FRAME,
    maxSendBufferBytes: SEND_LIMIT,
    connectTimeoutMs: 5_000,
  });
  connections.push(inner);
  const conn = cipher === 'plain' ? inner : encrypted(inner, cipher);
  const sink = new RecordingSink();
  conn.start(sink);
  return { conn, inner, sink };
}

async function raw(url: string, kind: TransportKind): Promise<{ link: RawLink; sink: RecordingSink }> {
  const link = await dialRaw({ url, kind, maxFrameBytes: MAX_FRAME });
  rawLinks.push(link);
  const sink = new RecordingSink();
  link.start(sink);
  return { link, sink };
}

function heartbeat(codec: typeof CODEC_JSON | typeof CODEC_MSGPACK): Uint8Array {
  return encodeBody(codec, sampleMessages().Heartbeat);
}

function frames(sink: RecordingSink): [number, string][] {
  return sink.frames.map((f) => [f.codecByte, f.body.toString('hex')]);
}

const hex = (body: Uint8Array): string => Buffer.from(body).toString('hex');

describe.each(TRANSPORTS)('encrypted connections over $name', ({ url, kind }) => {
  it('carry frames in both codecs both ways, handing the owner plaintext under the plain codec byte', async () => {
    const { server, next } = await encryptedServer(url);
    const client = await dial(server.url, new PayloadCipher(KEY));
    const plane = await next();
    const sent: [number, Uint8Array][] = [
      [CODEC_JSON, heartbeat(CODEC_JSON)],
      [CODEC_MSGPACK, heartbeat(CODEC_MSGPACK)],
      [CODEC_MSGPACK, new Uint8Array(0)],
      [CODEC_JSON, new Uint8Array(40_000).fill(0x20)],
    ];
    for (const [codec, body] of sent) client.conn.send(codec, body);
    for (const [codec, body] of sent) plane.conn.send(codec, body);
    await plane.sink.until(() => plane.sink.frames.length === sent.length);
    await client.sink.until(() => client.sink.frames.length === sent.length);
    const expected = sent.map(([codec, body]) => [codec, hex(body)]);
    expect(frames(plane.sink)).toEqual(expected);
    expect(frames(client.sink)).toEqual(expected);
    expect(plane.sink.errors).toEqual([]);
    expect(client.sink.errors).toEqual([]);
    expect(plane.conn.id).toBe(plane.inner.id);
    expect(plane.conn.remoteAddress).toBe(plane.inner.remoteAddress);
  });

  it('puts the section 6 layout on the wire, as a client written from PROTOCOL.md reads and writes it', async () => {
    const { server, next } = await encryptedServer(url);
    const { link, sink } = await raw(server.url, kind);
    const plane = await next();
    const theirs = new PayloadCipher(KEY);
    const body = heartbeat(CODEC_MSGPACK);

    // Node to plane: the raw client encrypts with its own cipher.
    const wire = theirs.encrypt(0x82, body);
    if (link.kind === 'websocket') link.sendMessage(Buffer.concat([Buffer.of(0x82), wire]), true);
    else link.send(0x82, wire);
    await plane.sink.until(() => plane.sink.frames.length === 1);
    expect(frames(plane.sink)).toEqual([[CODEC_MSGPACK, hex(body)]]);

    // Plane to node: nothing of the plaintext shows on the wire.
    plane.conn.send(CODEC_JSON, heartbeat(CODEC_JSON));
    await sink.until(() => sink.frames.length === 1);
    const received = sink.frames[0]!;
    let codecByte: number;
    let encryptedBody: Uint8Array;
    if (link.kind === 'websocket') {
      expect(link.binaryFlags).toEqual([true]); // every message binary, even for JSON
      codecByte = received.body[0]!;
      encryptedBody = received.body.subarray(1);
    } else {
      if (link.kind === 'grpc') expect(link.frames.map((f) => [f.codec, f.encrypted])).toEqual([[CODEC_JSON, true]]);
      codecByte = received.codecByte;
      encryptedBody = received.body;
    }
    expect(codecByte).toBe(0x81);
    expect(Buffer.from(encryptedBody).includes(Buffer.from('Heartbeat'))).toBe(false);
    expect(hex(theirs.decrypt(0x81, encryptedBody))).toBe(hex(heartbeat(CODEC_JSON)));
  });

  it('answers plaintext frames in either codec with decrypt_failed, and delivers nothing after', async () => {
    const { server, next } = await encryptedServer(url);
    for (const codec of [CODEC_JSON, CODEC_MSGPACK] as const) {
      const client = await dial(server.url, 'plain');
      const plane = await next();
      client.conn.send(codec, heartbeat(codec));
      await plane.sink.until(() => plane.sink.errors.length === 1);
      expect(plane.sink.errors.map((e) => [e.code, e.fatal])).toEqual([['decrypt_failed', true]]);
      // A correct frame after it is dropped: that peer is not to be trusted any more.
      client.conn.send(0x80 | codec, new PayloadCipher(KEY).encrypt(0x80 | codec, heartbeat(codec)));
      // The owner replies (encrypted) and closes, as a node session does.
      plane.conn.send(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Error', data: { code: 'decrypt_failed' } }));
      await client.conn.close();
      await plane.sink.until(() => plane.sink.closes.length === 1);
      expect(plane.sink.frames).toEqual([]);
      expect(plane.sink.errors).toHaveLength(1);
      // The plain client got the reply only as ciphertext.
      expect(client.sink.frames.every((f) => !f.body.includes(Buffer.from('decrypt_failed')))).toBe(true);
    }
  });

  it('refuses a valid encrypted body sent without the 0x80 bit: the wire says plaintext', async () => {
    const { server, next } = await encryptedServer(url);
    const client = await dial(server.url, 'plain');
    const plane = await next();
    client.conn.send(CODEC_MSGPACK, new PayloadCipher(KEY).encrypt(0x82, heartbeat(CODEC_MSGPACK)));
    await plane.sink.until(() => plane.sink.errors.length === 1);
    expect(plane.sink.errors.map((e) => e.code)).toEqual(['decrypt_failed']);
    expect(plane.sink.frames).toEqual([]);
  });

  it('answers a frame with one bit flipped, or under another key, with decrypt_failed', async () => {
    const { server, next } = await encryptedServer(url);
    const client = await dial(server.url, new PayloadCipher(KEY));
    const plane = await next();
    client.conn.send(CODEC_MSGPACK, heartbeat(CODEC_MSGPACK));
    await plane.sink.until(() => plane.sink.frames.length === 1);

    const tampered = new PayloadCipher(KEY).encrypt(0x82, heartbeat(CODEC_MSGPACK));
    tampered[tampered.length >> 1]! ^= 0x10;
    client.inner.send(0x82, tampered);
    client.conn.send(CODEC_MSGPACK, heartbeat(CODEC_MSGPACK)); // valid, but after the bad one
    await plane.sink.until(() => plane.sink.errors.length === 1);
    expect(plane.sink.errors.map((e) => e.code)).toEqual(['decrypt_failed']);
    // The reply still reaches the node, encrypted; the valid frame after the bad one never reached the owner.
    plane.conn.send(CODEC_JSON, heartbeat(CODEC_JSON));
    await client.sink.until(() => client.sink.frames.length === 1);
    expect(frames(client.sink)).toEqual([[CODEC_JSON, hex(heartbeat(CODEC_JSON))]]);
    await client.conn.close();
    await plane.sink.until(() => plane.sink.closes.length === 1);
    expect(plane.sink.frames).toHaveLength(1);

    const stranger = await dial(server.url, new PayloadCipher(randomBytes(32)));
    const strangerPlane = await next();
    stranger.conn.send(CODEC_JSON, heartbeat(CODEC_JSON));
    await strangerPlane.sink.until(() => strangerPlane.sink.errors.length === 1);
    expect(strangerPlane.sink.errors.map((e) => e.code)).toEqual(['decrypt_failed']);
    expect(strangerPlane.sink.frames).toEqual([]);
  });

  it('closes a connection whose cipher has used up its nonces rather than reuse one', async () => {
    const { server, next } = await encryptedServer(url);
    const client = await dial(server.url, new PayloadCipher(KEY, { maxEncryptions: 2 }));
    const plane = await next();
    for (let i = 0; i < 3; i++) client.conn.send(CODEC_JSON, heartbeat(CODEC_JSON));
    await client.sink.until(() => client.sink.closes.length === 1);
    expect(client.sink.closes[0]?.message).toMatch(/encrypted 2 frames/);
    await plane.sink.until(() => plane.sink.closes.length === 1);
    expect(plane.sink.frames).toHaveLength(2);
    expect(plane.sink.errors).toEqual([]);
  });
});
