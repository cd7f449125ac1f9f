// The WebSocket transport over real sockets on port 0: `ws://` through the registry as users
// reach it (`transports/builtin.js`), raw `ws` clients for what no Muster peer would send,
// and `wss://` with certificates made at test time, with and without mutual TLS.
import { describe, it, expect, afterEach } from 'vitest';
import http from 'node:http';
import { once } from 'node:events';
import { WebSocket, type RawData } from 'ws';
import '../../transports/builtin.js';
import {
  transportFor,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type Transport,
  type TransportServer,
} from '../../transports/transport.js';
import { createWebSocketTransport, WS_PATH, WS_SUBPROTOCOL } from '../../transports/websocket.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { makeTestPki } from './test-certificates.js';
import { RecordingSink } from './recording-sink.js';

const MAX_FRAME = 64 * 1024;
const SEND_LIMIT = 64 * 1024;

interface Peer {
  conn: Connection;
  sink: RecordingSink;
}

/** A listening server whose connections are collected (and started unless told otherwise). */
class Harness {
  server!: TransportServer;
  readonly accepted: Peer[] = [];
  readonly dialed: Connection[] = [];
  readonly rawClients: WebSocket[] = [];
  private waiters: (() => void)[] = [];

  async listen(
    url: string,
    extra: Partial<ListenOptions> & { autoStart?: boolean; transport?: Transport } = {},
  ): Promise<this> {
    const { autoStart = true, transport = transportFor(new URL(url)), ...rest } = extra;
    this.server = await transport.listen(new URL(url), {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      onConnection: (conn) => {
        const sink = new RecordingSink();
        if (autoStart) conn.start(sink);
        this.accepted.push({ conn, sink });
        for (const w of this.waiters.splice(0)) w();
      },
      ...rest,
    });
    return this;
  }

  async nth(i: number): Promise<Peer> {
    while (this.accepted.length <= i) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.accepted[i]!;
  }

  async dial(extra: Partial<DialOptions> = {}, url = this.server.url): Promise<Peer> {
    const conn = await dial(new URL(url), extra);
    const sink = new RecordingSink();
    conn.start(sink);
    this.dialed.push(conn);
    return { conn, sink };
  }

  /** A bare `ws` client: sends what it is told, and reads only while not paused. */
  async raw(protocols: string[] = [WS_SUBPROTOCOL], url = this.server.url): Promise<WebSocket> {
    const ws = new WebSocket(url, protocols, { maxPayload: 16 * MAX_FRAME });
    ws.on('error', () => {});
    this.rawClients.push(ws);
    await once(ws, 'open');
    return ws;
  }

  async close(): Promise<void> {
    await this.server.close();
    for (const ws of this.rawClients) ws.terminate();
    await Promise.all([...this.dialed, ...this.accepted.map((a) => a.conn)].map((c) => c.close()));
  }
}

const dial = (url: URL, extra: Partial<DialOptions> = {}): Promise<Connection> =>
  transportFor(url).dial(url, {
    maxFrameBytes: MAX_FRAME,
    maxSendBufferBytes: SEND_LIMIT,
    connectTimeoutMs: 5_000,
    ...extra,
  });

/** Frames as short comparable strings: toStrictEqual walks big Buffers byte by byte, slowly. */
const digest = (frames: { codecByte: number; body: Uint8Array }[]): string[] =>
  frames.map((f) => `${f.codecByte}:${Buffer.from(f.body).toString('base64')}`);

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const sample = (i: number): { codecByte: number; body: Uint8Array } => {
  const msgs = Object.values(sampleMessages());
  const codec = i % 2 === 0 ? CODEC_JSON : CODEC_MSGPACK;
  return { codecByte: codec, body: encodeBody(codec, msgs[i % msgs.length]) };
};

/** The error a raw `ws` client gets when the server refuses its handshake. */
async function refusal(url: string, protocols: string[] = [WS_SUBPROTOCOL]): Promise<string> {
  const ws = new WebSocket(url, protocols);
  const [err] = (await once(ws, 'error').catch((e: unknown) => [e])) as [Error];
  return err.message;
}

const LOCAL = `ws://127.0.0.1:0${WS_PATH}`;

const harnesses: Harness[] = [];
const harness = async (url = LOCAL, extra: Parameters<Harness['listen']>[1] = {}): Promise<Harness> => {
  const h = await new Harness().listen(url, extra);
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});

describe('ws transport', () => {
  it('serves a URL with the real port and path, and carries frames both ways in both codecs, in order', async () => {
    const h = await harness();
    expect(h.server.url).toMatch(/^ws:\/\/127\.0\.0\.1:[1-9]\d*\/v1\/connect$/);
    const client = await h.dial();
    const server = await h.nth(0);
    expect(server.conn.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(client.conn.remoteAddress).toBe(new URL(h.server.url).host);
    expect(server.conn.id).toMatch(/^c-\d+$/);
    expect(server.conn.peerNames).toEqual([]);

    const sent = Array.from({ length: 40 }, (_, i) => sample(i));
    sent.push({ codecByte: CODEC_MSGPACK, body: new Uint8Array(MAX_FRAME - 1).fill(9) }); // the largest allowed
    sent.push({ codecByte: CODEC_JSON, body: new Uint8Array(0) });
    for (const f of sent) client.conn.send(f.codecByte, f.body);
    for (const f of sent) server.conn.send(f.codecByte, f.body);
    await server.sink.until(() => server.sink.frames.length === sent.length);
    await client.sink.until(() => client.sink.frames.length === sent.length);
    expect(digest(server.sink.frames)).toStrictEqual(digest(sent));
    expect(digest(client.sink.frames)).toStrictEqual(digest(sent));
    expect(server.sink.errors).toEqual([]);
  });

  it('maps a text message to JSON (0x01) and a binary message to MessagePack (0x02), both ways', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    const received: { text: string; isBinary: boolean }[] = [];
    raw.on('message', (data: RawData, isBinary: boolean) => received.push({ text: String(data), isBinary }));

    raw.send('{"type":"x"}'); // a string goes as a text message
    raw.send(Buffer.from([0x81, 0xa1, 0x61, 0x01]), { binary: true });
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(server.sink.frames.map((f) => [f.codecByte, f.body.toString('hex')])).toEqual([
      [CODEC_JSON, Buffer.from('{"type":"x"}').toString('hex')],
      [CODEC_MSGPACK, '81a16101'],
    ]);

    server.conn.send(CODEC_JSON, Buffer.from('{"a":1}'));
    server.conn.send(CODEC_MSGPACK, Buffer.from('binary'));
    while (received.length < 2) await once(raw, 'message');
    expect(received).toEqual([
      { text: '{"a":1}', isBinary: false },
      { text: 'binary', isBinary: true },
    ]);
    // Encrypted frames (0x81, 0x82) have their own message form: encrypted-connection.test.ts.
    expect(() => server.conn.send(0x03, new Uint8Array(1))).toThrow(/cannot send codec byte 0x3/);
    expect(() => server.conn.send(0x85, new Uint8Array(1))).toThrow(/cannot send codec byte 0x85/);
  });

  it('refuses a handshake that does not offer the muster.v1 subprotocol', async () => {
    const h = await harness();
    expect(await refusal(h.server.url, [])).toMatch(/Unexpected server response: 400/);
    expect(await refusal(h.server.url, ['chat'])).toMatch(/Unexpected server response: 400/);
    // Offered among others, it is picked.
    const raw = await h.raw(['chat', WS_SUBPROTOCOL]);
    expect(raw.protocol).toBe(WS_SUBPROTOCOL);
    await h.nth(0);
    expect(h.accepted).toHaveLength(1);
  });

  it('refuses other paths with 404, and dials the protocol path when the URL names none', async () => {
    const h = await harness();
    const base = new URL(h.server.url);
    await expect(dial(new URL(`ws://${base.host}/v2/connect`))).rejects.toThrow(
      /connect to ws:\/\/.*\/v2\/connect failed: Unexpected server response: 404/,
    );
    const [res] = (await once(http.get(`http://${base.host}/`), 'response')) as [http.IncomingMessage];
    res.resume();
    expect(res.statusCode).toBe(404);
    expect(h.accepted).toHaveLength(0);

    const client = await h.dial({}, `ws://${base.host}`);
    client.conn.send(CODEC_JSON, sample(0).body);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
  });

  it('reports a message over maxFrameBytes as frame_too_large, and the Error and close still reach the peer', async () => {
    const h = await harness();
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

  it('lets ws cut a message over 4 × maxFrameBytes (close 1009) and reports closed with the error', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    const closed = once(raw, 'close');
    raw.send(new Uint8Array(4 * MAX_FRAME + 1), { binary: true });
    const [code] = (await closed) as [number];
    expect(code).toBe(1009);
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.closes[0]).toBeInstanceOf(Error);
    expect(server.sink.closes[0]!.message).toMatch(/max payload size exceeded/i);
    expect(server.sink.errors).toEqual([]);
    expect(server.conn.isClosed).toBe(true);
  });

  it('delivers frames that arrived before start, first, once started', async () => {
    const h = await harness(LOCAL, { autoStart: false });
    const client = await h.dial();
    const server = await h.nth(0);
    for (let i = 0; i < 5; i++) client.conn.send(sample(i).codecByte, sample(i).body);
    await sleep(50); // let them reach the server side before anyone reads
    expect(server.sink.frames).toEqual([]);
    server.conn.start(server.sink);
    client.conn.send(sample(5).codecByte, sample(5).body);
    await server.sink.until(() => server.sink.frames.length === 6);
    expect(digest(server.sink.frames)).toStrictEqual(digest([0, 1, 2, 3, 4, 5].map(sample)));
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
    await other.conn.close(); // already closed: resolves at once
    await sleep(20);
    expect(closing.sink.closes).toEqual([undefined]);
    expect(other.sink.closes).toEqual([undefined]);
    closing.conn.send(CODEC_JSON, sample(0).body); // a no-op, not a throw
  });

  it('reports a peer that vanishes without a close frame as closed with an error, once', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    raw.terminate(); // the TCP connection ends with no WebSocket close handshake
    await server.sink.until(() => server.sink.closes.length > 0);
    await sleep(20);
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/closed with code 1006/);
  });

  it('closes a connection whose peer stops reading once its send buffer passes the limit', async () => {
    const h = await harness();
    const raw = await h.raw();
    raw.pause(); // the peer reads nothing
    const server = await h.nth(0);
    const frame = new Uint8Array(8 * 1024).fill(1);
    const cap = 256 * 1024 * 1024; // far beyond any socket buffer: reaching it means memory grew unbounded
    let sent = 0;
    while (!server.conn.isClosed && sent < cap) {
      server.conn.send(CODEC_MSGPACK, frame);
      sent += frame.length;
      await nextTurn();
    }
    expect(server.conn.isClosed).toBe(true);
    expect(sent).toBeGreaterThan(SEND_LIMIT);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    await server.sink.until(() => server.sink.closes.length > 0);
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/send buffer passed 65536 bytes; the peer is not reading/);
    server.conn.send(CODEC_MSGPACK, frame); // dropped, not queued
  });

  it('keeps a connection whose peer reads, at the same limit and pace', async () => {
    const h = await harness();
    const client = await h.dial();
    const server = await h.nth(0);
    const frame = new Uint8Array(8 * 1024).fill(1);
    const count = 1024; // 8 MiB in all, far past the 64 KiB limit
    for (let i = 0; i < count; i++) {
      server.conn.send(CODEC_MSGPACK, frame);
      await nextTurn();
    }
    await client.sink.until(() => client.sink.frames.length === count);
    expect(server.conn.isClosed).toBe(false);
  });

  it('terminates a peer that stops answering pings, and keeps one that answers', async () => {
    const interval = 200;
    const transport = createWebSocketTransport({ pingIntervalMs: interval });
    const h = await harness(LOCAL, { transport });
    const silent = await h.raw();
    const silentServer = await h.nth(0);
    const live = await h.dial(); // answers pings, as every `ws` client does while reading
    const liveServer = await h.nth(1);
    silent.pause(); // its socket reads nothing more, so pings go unanswered: a half-open peer

    await silentServer.sink.until(() => silentServer.sink.closes.length === 1);
    expect(silentServer.sink.closes[0]?.message).toMatch(/no pong within 200 ms; the peer is gone/);
    await sleep(3 * interval);
    expect(liveServer.conn.isClosed).toBe(false);
    expect(live.conn.isClosed).toBe(false);
    expect(liveServer.sink.closes).toEqual([]);
  });

  it('stops accepting on server close but leaves open connections to their owner', async () => {
    const h = await harness();
    const client = await h.dial();
    const server = await h.nth(0);
    await h.server.close();
    await expect(dial(new URL(h.server.url))).rejects.toThrow(/connect to .* failed/);
    server.conn.send(CODEC_JSON, sample(0).body);
    await client.sink.until(() => client.sink.frames.length === 1);
    await server.conn.close();
    await client.sink.until(() => client.sink.closes.length === 1);
    expect(server.sink.closes).toEqual([undefined]);
  });

  it('rejects a URL without a port or of another scheme', async () => {
    await expect(harness('ws://127.0.0.1/v1/connect')).rejects.toThrow(/host:port/);
    const tcpUrl = new URL('tcp://127.0.0.1:0');
    const options = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, onConnection: () => {} };
    await expect(createWebSocketTransport().listen(tcpUrl, options)).rejects.toThrow(/expected ws:\/\/ or wss:\/\//);
  });
});

describe('wss transport', () => {
  const pki = makeTestPki();
  const WSS = `wss://127.0.0.1:0${WS_PATH}`;

  it('needs a certificate to listen', async () => {
    await expect(harness(WSS)).rejects.toThrow(/needs a certificate and key/);
  });

  it('carries frames both ways with a CA-signed server certificate, and refuses an unknown CA', async () => {
    const h = await harness(WSS, { tls: { cert: pki.server.cert, key: pki.server.key, requireClientCert: false } });
    expect(h.server.url).toMatch(/^wss:\/\/127\.0\.0\.1:[1-9]\d*\/v1\/connect$/);
    const client = await h.dial({ tls: { ca: pki.ca } });
    const server = await h.nth(0);
    expect(server.conn.peerNames).toEqual([]);
    const sent = [0, 1, 2, 3].map(sample);
    for (const f of sent) client.conn.send(f.codecByte, f.body);
    for (const f of sent) server.conn.send(f.codecByte, f.body);
    await server.sink.until(() => server.sink.frames.length === sent.length);
    await client.sink.until(() => client.sink.frames.length === sent.length);
    expect(digest(server.sink.frames)).toStrictEqual(digest(sent));
    expect(digest(client.sink.frames)).toStrictEqual(digest(sent));

    await expect(dial(new URL(h.server.url), { tls: { ca: pki.otherCa.cert } })).rejects.toThrow(
      /connect to wss:.* failed/,
    );
    await expect(dial(new URL(h.server.url))).rejects.toThrow(/connect to wss:.* failed/); // system CAs only
  });

  it('with mutual TLS, refuses a client without a trusted certificate and names one with it', async () => {
    const h = await harness(WSS, {
      tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, requireClientCert: true },
    });
    const url = new URL(h.server.url);
    await expect(dial(url, { tls: { ca: pki.ca } })).rejects.toThrow(/connect to wss:.* failed/);
    const stranger = pki.otherCa.client('node-7.example');
    await expect(dial(url, { tls: { ca: pki.ca, ...stranger } })).rejects.toThrow(/connect to wss:.* failed/);
    expect(h.accepted).toHaveLength(0);

    const mine = pki.client('node-7.example', ['node-7.example', 'runner.example']);
    const client = await h.dial({ tls: { ca: pki.ca, cert: mine.cert, key: mine.key } });
    const server = await h.nth(0);
    expect([...server.conn.peerNames].sort()).toEqual(['node-7.example', 'runner.example']);
    client.conn.send(CODEC_MSGPACK, sample(1).body);
    await server.sink.until(() => server.sink.frames.length === 1);
  });
});
