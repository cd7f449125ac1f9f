// The WebSocket transport over real sockets on port 0: `ws://` and `wss://` run the transport
// contract (transport-contract.ts); then what only WebSocket does, with raw `ws` clients for what no
// Muster peer would send: the message forms of the codecs, the subprotocol and path, ws's own
// payload cap, permessage-deflate and its bound, the keepalive ping (under fake interval timers),
// and `wss://` with certificates made at test time, with and without mutual TLS.
import { describe, it, expect, afterEach, vi } from 'vitest';
import http from 'node:http';
import { once } from 'node:events';
import { WebSocket, type RawData } from 'ws';
import '../../transports/builtin.js';
import { type Connection, type DialOptions } from '../../transports/transport.js';
import { createWebSocketTransport, WS_PATH, WS_SUBPROTOCOL } from '../../transports/websocket.js';
import { CODEC_JSON, CODEC_MSGPACK } from '../../protocol/codec.js';
import { makeTestPki } from './test-certificates.js';
import {
  Harness,
  MAX_FRAME,
  dial as dialWith,
  digest,
  sample,
  transportContract,
  type HarnessOptions,
  type TransportFixture,
} from './transport-contract.js';

const SEND_LIMIT = 64 * 1024;

const WS: TransportFixture = {
  name: 'ws',
  kind: 'websocket',
  listenUrl: () => `ws://127.0.0.1:0${WS_PATH}`,
  urlPattern: /^ws:\/\/127\.0\.0\.1:[1-9]\d*\/v1\/connect$/,
  acceptedAddress: /^127\.0\.0\.1:\d+$/,
  dialedAddress: (url) => url.host,
  sendLimit: SEND_LIMIT,
  carriesEncryptedCodecBytes: false,
  byteStream: false,
  refusedDial: /connect to ws:.* failed/,
  // The raw link's terminate: the TCP connection ends with no WebSocket close handshake.
  vanishReason: /closed with code 1006/,
};

transportContract(WS);

const pki = makeTestPki();

// TLS below: a socket counts what was written in one turn until the next, so the limit holds a
// burst (as in tls-transport.test.ts).
transportContract({
  ...WS,
  name: 'wss',
  listenUrl: () => `wss://127.0.0.1:0${WS_PATH}`,
  urlPattern: /^wss:\/\/127\.0\.0\.1:[1-9]\d*\/v1\/connect$/,
  sendLimit: 1024 * 1024,
  serverTls: { cert: pki.server.cert, key: pki.server.key, requireClientCert: false },
  clientTls: { ca: pki.ca },
  refusedDial: /connect to wss:.* failed/,
});

const dial = (url: URL, extra: Partial<DialOptions> = {}): Promise<Connection> =>
  dialWith(url, { tls: extra.tls, sendLimit: SEND_LIMIT });

/** A bare `ws` client of `h`: sends what it is told, and reads only while not paused. */
async function raw(h: Harness, protocols: string[] = [WS_SUBPROTOCOL]): Promise<WebSocket> {
  const ws = new WebSocket(h.server.url, protocols, { maxPayload: 16 * MAX_FRAME });
  ws.on('error', () => {});
  h.onClose(() => ws.terminate());
  await once(ws, 'open');
  return ws;
}

/** The error a raw `ws` client gets when the server refuses its handshake. */
async function refusal(url: string, protocols: string[] = [WS_SUBPROTOCOL]): Promise<string> {
  const ws = new WebSocket(url, protocols);
  const [err] = (await once(ws, 'error').catch((e: unknown) => [e])) as [Error];
  return err.message;
}

const LOCAL = WS.listenUrl();

const harnesses: Harness[] = [];
const harness = async (url = LOCAL, options: HarnessOptions = {}): Promise<Harness> => {
  const h = await new Harness(WS).listen(url, options);
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});

describe('ws transport', () => {
  it('maps a text message to JSON (0x01) and a binary message to MessagePack (0x02), both ways', async () => {
    const h = await harness();
    const ws = await raw(h);
    const server = await h.nth(0);
    const received: { text: string; isBinary: boolean }[] = [];
    ws.on('message', (data: RawData, isBinary: boolean) => received.push({ text: String(data), isBinary }));

    ws.send('{"type":"x"}'); // a string goes as a text message
    ws.send(Buffer.from([0x81, 0xa1, 0x61, 0x01]), { binary: true });
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(server.sink.frames.map((f) => [f.codecByte, f.body.toString('hex')])).toEqual([
      [CODEC_JSON, Buffer.from('{"type":"x"}').toString('hex')],
      [CODEC_MSGPACK, '81a16101'],
    ]);

    server.conn.send(CODEC_JSON, Buffer.from('{"a":1}'));
    server.conn.send(CODEC_MSGPACK, Buffer.from('binary'));
    while (received.length < 2) await once(ws, 'message');
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
    const ws = await raw(h, ['chat', WS_SUBPROTOCOL]);
    expect(ws.protocol).toBe(WS_SUBPROTOCOL);
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

    const client = await h.dial({ url: `ws://${base.host}` });
    client.conn.send(CODEC_JSON, sample(0).body);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
  });

  it('lets ws cut a message over 4 × maxFrameBytes (close 1009) and reports closed with the error', async () => {
    const h = await harness();
    const ws = await raw(h);
    const server = await h.nth(0);
    const closed = once(ws, 'close');
    ws.send(new Uint8Array(4 * MAX_FRAME + 1), { binary: true });
    const [code] = (await closed) as [number];
    expect(code).toBe(1009);
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.closes[0]).toBeInstanceOf(Error);
    expect(server.sink.closes[0]!.message).toMatch(/max payload size exceeded/i);
    expect(server.sink.errors).toEqual([]);
    expect(server.conn.isClosed).toBe(true);
  });

  it('terminates a peer that stops answering pings, and keeps one that answers', async () => {
    // Only the keepalive's interval is faked: the sockets, and ws's own timeouts, stay real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const interval = 200;
      const transport = createWebSocketTransport({ pingIntervalMs: interval });
      const h = await harness(LOCAL, { transport });
      const silent = await raw(h);
      const silentServer = await h.nth(0);
      const live = await h.dial(); // answers pings, as every `ws` client does while reading
      const liveServer = await h.nth(1);
      silent.pause(); // its socket reads nothing more, so pings go unanswered: a half-open peer

      for (let round = 1; round <= 4; round++) {
        vi.advanceTimersByTime(interval); // a ping to each, or the end of one that did not answer
        // The live peer answers the ping before the frame that follows it, and its reply comes
        // after its pong on the same socket: once the reply is here, so is the pong.
        liveServer.conn.send(CODEC_JSON, sample(0).body);
        await live.sink.until(() => live.sink.frames.length === round);
        live.conn.send(CODEC_JSON, sample(0).body);
        await liveServer.sink.until(() => liveServer.sink.frames.length === round);
      }
      await silentServer.sink.until(() => silentServer.sink.closes.length === 1);
      expect(silentServer.sink.closes[0]?.message).toMatch(/no pong within 200 ms; the peer is gone/);
      expect(liveServer.conn.isClosed).toBe(false);
      expect(live.conn.isClosed).toBe(false);
      expect(liveServer.sink.closes).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('rejects a URL without a port or of another scheme', async () => {
    await expect(harness('ws://127.0.0.1/v1/connect')).rejects.toThrow(/host:port/);
    const tcpUrl = new URL('tcp://127.0.0.1:0');
    const options = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, onConnection: () => {} };
    await expect(createWebSocketTransport().listen(tcpUrl, options)).rejects.toThrow(/expected ws:\/\/ or wss:\/\//);
  });
});

describe('wss transport', () => {
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

// PROTOCOL.md section 8: on WebSocket, compression is the protocol's own permessage-deflate
// (RFC 7692), agreed in the handshake when the listener allows it (never behind payload
// encryption), with the inflated size held to the same bound while inflating.
describe('ws permessage-deflate', () => {
  /** A raw client that offers permessage-deflate and compresses everything it sends. */
  async function deflatingClient(h: Harness): Promise<WebSocket> {
    const ws = new WebSocket(h.server.url, [WS_SUBPROTOCOL], { perMessageDeflate: { threshold: 0 }, maxPayload: 16 * MAX_FRAME });
    ws.on('error', () => {});
    h.onClose(() => ws.terminate());
    await once(ws, 'open');
    return ws;
  }

  it('is agreed with a client that offers it, and a compressed message arrives as its frame', async () => {
    const h = await harness(LOCAL, { compression: true });
    const ws = await deflatingClient(h);
    expect(ws.extensions).toContain('permessage-deflate');
    const server = await h.nth(0);
    const text = JSON.stringify({ type: 'LogChunk', data: 'x'.repeat(30_000) });
    ws.send(text);
    await server.sink.until(() => server.sink.frames.length === 1);
    expect(server.sink.frames[0]!.body.toString()).toBe(text);
  });

  it('is not agreed when the listener does not allow it (as behind payload encryption)', async () => {
    const h = await harness(LOCAL);
    const ws = await deflatingClient(h);
    expect(ws.extensions).toBe('');
  });

  it('stops a compression bomb at the payload bound while inflating: the connection closes, nothing is delivered', async () => {
    const h = await harness(LOCAL, { compression: true });
    const ws = await deflatingClient(h);
    expect(ws.extensions).toContain('permessage-deflate'); // the bomb goes compressed: a few KiB on the wire
    const server = await h.nth(0);
    // 8 MiB of zeros compress to about 8 KiB, and inflate far past 4 × the frame limit.
    ws.send(Buffer.alloc(8 * 1024 * 1024), { binary: true });
    const [code] = (await once(ws, 'close')) as [number];
    expect(code).toBe(1009); // message too big: refused while inflating, at the bound
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.frames).toHaveLength(0);
  });
});
