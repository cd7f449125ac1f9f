// The tls transport over real sockets on port 0, through the registry as users reach it
// (`transports/builtin.js`), with a throwaway PKI: the stream cases over TLS, then the
// certificate checks: server trust on dial, and mutual TLS with `peerNames`.
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import '../../transports/builtin.js';
import {
  transportFor,
  type ClientTlsOptions,
  type Connection,
  type ServerTlsOptions,
  type TransportServer,
} from '../../transports/transport.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { peerNamesOf } from '../../transports/peer-names.js';
import { makeTestPki, type CertAndKey } from './test-certificates.js';
import { RecordingSink } from './recording-sink.js';

const MAX_FRAME = 64 * 1024;
// A TLS socket counts what was written in this turn of the event loop until the next one, even
// when the kernel took it at once, so the limit must hold a whole burst of sends (as the
// default, 8 × max_frame_bytes, does).
const SEND_LIMIT = 1024 * 1024;
const pki = makeTestPki();
const SERVER_TLS: ServerTlsOptions = { cert: pki.server.cert, key: pki.server.key, requireClientCert: false };
const MUTUAL_TLS: ServerTlsOptions = { ...SERVER_TLS, ca: pki.ca, requireClientCert: true };

interface Peer {
  conn: Connection;
  sink: RecordingSink;
}

/** A tls:// listener whose connections are collected and started, and the connections dialed to it. */
class Harness {
  server!: TransportServer;
  readonly accepted: Peer[] = [];
  private readonly dialed: Connection[] = [];
  private readonly raws: net.Socket[] = [];
  private waiters: (() => void)[] = [];

  async listen(serverTls: ServerTlsOptions = SERVER_TLS): Promise<void> {
    const url = new URL('tls://127.0.0.1:0');
    this.server = await transportFor(url).listen(url, {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      tls: serverTls,
      onConnection: (conn) => {
        const sink = new RecordingSink();
        conn.start(sink);
        this.accepted.push({ conn, sink });
        for (const w of this.waiters.splice(0)) w();
      },
    });
  }

  async nth(i: number): Promise<Peer> {
    while (this.accepted.length <= i) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.accepted[i]!;
  }

  /** Dials the listener; `clientTls` defaults to trusting the test CA with no client certificate. */
  async dial(clientTls: ClientTlsOptions | undefined = { ca: pki.ca }): Promise<Peer> {
    const conn = await dial(new URL(this.server.url), clientTls);
    this.dialed.push(conn);
    const sink = new RecordingSink();
    conn.start(sink);
    return { conn, sink };
  }

  /** A plain TLS client, to send bytes no Muster peer would. */
  async raw(): Promise<tls.TLSSocket> {
    const url = new URL(this.server.url);
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: pki.ca });
    this.raws.push(socket);
    await once(socket, 'secureConnect');
    socket.setNoDelay(true);
    return socket;
  }

  /** Stops listening and closes every connection of this harness, as an owner must. */
  async close(): Promise<void> {
    await this.server.close();
    for (const raw of this.raws) raw.destroy();
    await Promise.all([...this.dialed, ...this.accepted.map((a) => a.conn)].map((c) => c.close()));
  }
}

const dial = (url: URL, clientTls?: ClientTlsOptions): Promise<Connection> =>
  transportFor(url).dial(url, {
    maxFrameBytes: MAX_FRAME,
    maxSendBufferBytes: SEND_LIMIT,
    connectTimeoutMs: 5_000,
    ...(clientTls === undefined ? {} : { tls: clientTls }),
  });

function writeAsync(socket: net.Socket, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => socket.write(bytes, (err) => (err ? reject(err) : resolve())));
}

/** Frames as short comparable strings: toStrictEqual walks big Buffers byte by byte, slowly. */
const digest = (frames: { codecByte: number; body: Uint8Array }[]): string[] =>
  frames.map((f) => `${f.codecByte}:${Buffer.from(f.body).toString('base64')}`);

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const sample = (i: number): { codecByte: number; body: Uint8Array } => {
  const msgs = Object.values(sampleMessages());
  const codecByte = i % 2 === 0 ? CODEC_JSON : CODEC_MSGPACK;
  return { codecByte, body: encodeBody(codecByte === CODEC_JSON ? CODEC_JSON : CODEC_MSGPACK, msgs[i % msgs.length]) };
};

const harnesses: Harness[] = [];
const harness = async (serverTls?: ServerTlsOptions): Promise<Harness> => {
  const h = new Harness();
  await h.listen(serverTls);
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});

/**
 * Dials and expects the handshake to be refused. With TLS 1.3 the client finishes its side
 * before the server has checked the client certificate, so a refusal comes as a failed dial or
 * as a connection that closes at once (with an alert's error when OpenSSL refused, none when
 * Node's own check did: it ends the socket without an alert).
 */
async function expectRefused(h: Harness, clientTls: ClientTlsOptions): Promise<void> {
  let conn: Connection;
  try {
    conn = await dial(new URL(h.server.url), clientTls);
  } catch {
    return;
  }
  const sink = new RecordingSink();
  conn.start(sink);
  conn.send(CODEC_JSON, sample(0).body);
  await sink.until(() => sink.closes.length > 0);
  expect(sink.frames).toEqual([]);
  expect(conn.isClosed).toBe(true);
}

describe('tls transport', () => {
  it('serves a URL with the real port and carries frames both ways, in order', async () => {
    const h = await harness();
    expect(h.server.url).toMatch(/^tls:\/\/127\.0\.0\.1:[1-9]\d*$/);
    const client = await h.dial();
    const server = await h.nth(0);
    expect(server.conn.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(client.conn.remoteAddress).toBe(h.server.url.slice('tls://'.length));
    expect(server.conn.id).toMatch(/^c-\d+$/);
    expect(server.conn.id).not.toBe(client.conn.id);
    // No client certificate was asked for: nobody's names are vouched for.
    expect(server.conn.peerNames).toEqual([]);
    expect(client.conn.peerNames).toEqual([]);

    const sent = Array.from({ length: 40 }, (_, i) => sample(i));
    sent.push({ codecByte: 0x81, body: new Uint8Array(0) });
    sent.push({ codecByte: 0x02, body: new Uint8Array(MAX_FRAME - 1).fill(9) }); // the largest allowed
    for (const f of sent) client.conn.send(f.codecByte, f.body);
    for (const f of sent) server.conn.send(f.codecByte, f.body);
    await server.sink.until(() => server.sink.frames.length === sent.length);
    await client.sink.until(() => client.sink.frames.length === sent.length);
    expect(digest(server.sink.frames)).toStrictEqual(digest(sent));
    expect(digest(client.sink.frames)).toStrictEqual(digest(sent));
    expect(server.sink.errors).toEqual([]);
  });

  it('dials by host name when the certificate names it', async () => {
    const h = await harness();
    const port = new URL(h.server.url).port;
    const conn = await dial(new URL(`tls://localhost:${port}`), { ca: pki.ca });
    await conn.close();
  });

  it('reassembles a frame written one byte at a time', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    const frames = [sample(0), sample(1)];
    const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
    for (let i = 0; i < bytes.length; i++) {
      await writeAsync(raw, bytes.subarray(i, i + 1));
      if (i % 16 === 0) await nextTurn(); // let the server read partial frames
    }
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(digest(server.sink.frames)).toStrictEqual(digest(frames));
    expect(server.sink.errors).toEqual([]);
  });

  it('splits frames coalesced into one write', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    const frames = Array.from({ length: 200 }, (_, i) => sample(i));
    await writeAsync(raw, Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body))));
    await server.sink.until(() => server.sink.frames.length === 200);
    expect(digest(server.sink.frames)).toStrictEqual(digest(frames));
  });

  it('reports an oversize frame as frame_too_large from its header alone, and the Error still reaches the peer', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    const ok = sample(0);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(MAX_FRAME + 1, 0);
    header[4] = CODEC_JSON;
    const received: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = once(raw, 'end');
    await writeAsync(raw, Buffer.concat([encodeFrame(ok.codecByte, ok.body), header]));
    await server.sink.until(() => server.sink.errors.length === 1);
    expect(server.sink.errors[0]!.code).toBe('frame_too_large');
    expect(server.sink.frames).toHaveLength(1);

    await writeAsync(raw, encodeFrame(ok.codecByte, ok.body)); // dropped: the stream is no longer trusted
    server.conn.send(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Error', data: server.sink.errors[0]!.toData() }));
    await server.conn.close();
    await ended;
    expect(server.sink.frames).toHaveLength(1);
    expect(server.sink.closes).toEqual([undefined]);
    const reply = Buffer.concat(received);
    expect(reply.readUInt32BE(0)).toBe(reply.length - 4);
    expect(JSON.parse(reply.subarray(5).toString('utf8'))).toMatchObject({
      type: 'Error',
      data: { code: 'frame_too_large', fatal: true },
    });
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
    await other.conn.close();
    await sleep(20);
    expect(closing.sink.closes).toEqual([undefined]);
    expect(other.sink.closes).toEqual([undefined]);
  });

  // One 8 KiB frame per event-loop turn, so the socket can flush between sends and only a
  // peer that stops reading lets the buffer grow.
  const FRAME = new Uint8Array(8 * 1024).fill(1);

  it('closes a connection whose peer never reads once its send buffer passes the limit', async () => {
    const h = await harness();
    const raw = await h.raw();
    raw.pause(); // the peer reads nothing
    const server = await h.nth(0);
    const cap = 256 * 1024 * 1024; // far beyond any socket buffer: reaching it means memory grew unbounded
    let sent = 0;
    while (!server.conn.isClosed && sent < cap) {
      server.conn.send(CODEC_MSGPACK, FRAME);
      sent += FRAME.length;
      await nextTurn();
    }
    expect(server.conn.isClosed).toBe(true);
    expect(sent).toBeGreaterThan(SEND_LIMIT);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    await server.sink.until(() => server.sink.closes.length > 0);
    expect(server.sink.closes[0]?.message).toMatch(/send buffer passed 1048576 bytes; the peer is not reading/);
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

  it('hands over no connection to a client that does not speak TLS', async () => {
    const h = await harness();
    const url = new URL(h.server.url);
    const plain = net.connect({ host: url.hostname, port: Number(url.port) });
    await once(plain, 'connect');
    plain.on('error', () => {}); // the server may reset it
    plain.write(encodeFrame(CODEC_JSON, sample(0).body));
    await once(plain, 'close');
    expect(h.accepted).toEqual([]);
  });

  it('refuses to listen without a certificate, or with required client certificates but no CA', async () => {
    const url = new URL('tls://127.0.0.1:0');
    const options = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, onConnection: () => {} };
    await expect(transportFor(url).listen(url, options)).rejects.toThrow(/needs a certificate and key/);
    await expect(
      transportFor(url).listen(url, { ...options, tls: { ...SERVER_TLS, requireClientCert: true } }),
    ).rejects.toThrow(/needs a CA/);
  });
});

describe('tls transport server trust', () => {
  it('fails to dial a server whose certificate is not from a CA the client trusts', async () => {
    const h = await harness();
    const url = new URL(h.server.url);
    await expect(dial(url, { ca: pki.otherCa.cert })).rejects.toThrow(/connect to tls:.* failed/);
    // No `ca`: the system's CAs, which do not know the test CA either.
    await expect(dial(url)).rejects.toThrow(/connect to tls:.* failed/);
    expect(h.accepted).toEqual([]);
  });

  it('fails to dial a server whose certificate is for another name', async () => {
    const h = await harness();
    await expect(dial(new URL(h.server.url), { ca: pki.ca, servername: 'elsewhere.example' })).rejects.toThrow(
      /elsewhere\.example/,
    );
  });
});

describe('tls transport with mutual TLS', () => {
  it('refuses a client without a certificate', async () => {
    const h = await harness(MUTUAL_TLS);
    await expectRefused(h, { ca: pki.ca });
    expect(h.accepted).toEqual([]);
  });

  it('refuses a client whose certificate is from another CA', async () => {
    const h = await harness(MUTUAL_TLS);
    const stranger = pki.otherCa.client('runner-1.example', ['runner-1.example']);
    await expectRefused(h, { ca: pki.ca, ...stranger });
    expect(h.accepted).toEqual([]);
  });

  it('gives a client with a good certificate peerNames of its CN and DNS SANs', async () => {
    const h = await harness(MUTUAL_TLS);
    const cert = pki.client('runner-1', ['runner-1.ci.example', 'runner-1.local']);
    const client = await h.dial({ ca: pki.ca, ...cert });
    const server = await h.nth(0);
    expect(server.conn.peerNames).toEqual(['runner-1', 'runner-1.ci.example', 'runner-1.local']);
    expect(client.conn.peerNames).toEqual([]);
    client.conn.send(sample(0).codecByte, sample(0).body);
    await server.sink.until(() => server.sink.frames.length === 1);
  });

  it('reads a DNS SAN that holds a comma as one name, and names a certificate once', async () => {
    const h = await harness(MUTUAL_TLS);
    const cert = pki.client('same.example', ['same.example', 'odd,name.example']);
    await h.dial({ ca: pki.ca, ...cert });
    const server = await h.nth(0);
    expect(server.conn.peerNames).toEqual(['same.example', 'odd,name.example']);
  });
});

describe('peerNamesOf', () => {
  /** The names a server that asks for, but does not insist on, a client certificate reads. */
  async function namesSeenBy(clientCert: CertAndKey | undefined): Promise<string[]> {
    const server = tls.createServer({ ...pki.server, ca: pki.ca, requestCert: true, rejectUnauthorized: false });
    try {
      const seen = new Promise<string[]>((resolve) => server.once('secureConnection', (s) => resolve(peerNamesOf(s))));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as net.AddressInfo;
      const client = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, ...clientCert });
      try {
        return await seen;
      } finally {
        client.destroy();
      }
    } finally {
      server.close();
    }
  }

  it('names a verified certificate, and nothing for a missing or unverified one', async () => {
    expect(await namesSeenBy(pki.client('runner-2', ['runner-2.example']))).toEqual(['runner-2', 'runner-2.example']);
    expect(await namesSeenBy(undefined)).toEqual([]);
    expect(await namesSeenBy(pki.otherCa.client('runner-2', ['runner-2.example']))).toEqual([]);
  });
});
