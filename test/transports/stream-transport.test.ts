// The stream transports over real sockets: TCP on port 0 and a Unix socket in a temp dir
// run the same cases, through the registry as users reach them (`transports/builtin.js`).
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import '../../transports/builtin.js';
import { transportFor, type Connection, type TransportServer } from '../../transports/transport.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { RecordingSink } from './recording-sink.js';

const MAX_FRAME = 64 * 1024;
const SEND_LIMIT = 64 * 1024;

interface Accepted {
  conn: Connection;
  sink: RecordingSink;
}

/** A listening server whose connections are collected (and started unless told otherwise). */
class Harness {
  server!: TransportServer;
  readonly accepted: Accepted[] = [];
  private readonly dialed: Connection[] = [];
  private waiters: (() => void)[] = [];

  async listen(url: string, autoStart = true): Promise<void> {
    this.server = await transportFor(new URL(url)).listen(new URL(url), {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      onConnection: (conn) => {
        const sink = new RecordingSink();
        if (autoStart) conn.start(sink);
        this.accepted.push({ conn, sink });
        for (const w of this.waiters.splice(0)) w();
      },
    });
  }

  async nth(i: number): Promise<Accepted> {
    while (this.accepted.length <= i) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.accepted[i]!;
  }

  async dial(): Promise<{ conn: Connection; sink: RecordingSink }> {
    const url = new URL(this.server.url);
    const conn = await transportFor(url).dial(url, {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      connectTimeoutMs: 5_000,
    });
    const sink = new RecordingSink();
    conn.start(sink);
    this.dialed.push(conn);
    return { conn, sink };
  }

  /** Stops listening and closes every connection of this harness, as an owner must. */
  async close(): Promise<void> {
    await this.server.close();
    await Promise.all([...this.dialed, ...this.accepted.map((a) => a.conn)].map((c) => c.close()));
  }

  /** A plain `net` client, to send bytes no Muster peer would. */
  async raw(): Promise<net.Socket> {
    const url = new URL(this.server.url);
    const socket =
      url.protocol === 'unix:'
        ? net.connect({ path: decodeURIComponent(url.pathname) })
        : net.connect({ host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port) });
    socket.setNoDelay(true);
    await once(socket, 'connect');
    return socket;
  }
}

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

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-stream-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

const VARIANTS: [string, () => string, RegExp][] = [
  ['tcp', () => 'tcp://127.0.0.1:0', /^127\.0\.0\.1:\d+$/],
  ['unix', () => `unix://${path.join(tmpDir, `s-${Math.random().toString(36).slice(2, 8)}.sock`)}`, /^\/.*\.sock$/],
];

describe.each(VARIANTS)('%s stream transport', (scheme, listenUrl, addressPattern) => {
  const harnesses: Harness[] = [];
  const cleanup: (() => unknown)[] = [];
  const harness = async (autoStart = true): Promise<Harness> => {
    const h = new Harness();
    await h.listen(listenUrl(), autoStart);
    harnesses.push(h);
    return h;
  };
  afterEach(async () => {
    for (const fn of cleanup.splice(0)) await fn();
    for (const h of harnesses.splice(0)) await h.close();
  });

  it('serves a URL with the real address and carries frames both ways, in order', async () => {
    const h = await harness();
    expect(h.server.url).toMatch(scheme === 'tcp' ? /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/ : /^unix:\/\/\/.*\.sock$/);
    const client = await h.dial();
    const server = await h.nth(0);
    expect(server.conn.remoteAddress).toMatch(addressPattern);
    expect(client.conn.remoteAddress).toMatch(addressPattern);
    expect(server.conn.id).not.toBe(client.conn.id);
    expect(server.conn.id).toMatch(/^c-\d+$/);

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

  it('delivers frames that arrived before start, first, once started', async () => {
    const h = await harness(false);
    const client = await h.dial();
    const server = await h.nth(0);
    for (let i = 0; i < 5; i++) client.conn.send(sample(i).codecByte, sample(i).body);
    await sleep(50); // let them reach the server side before anyone reads
    expect(server.sink.frames).toEqual([]);
    server.conn.start(server.sink);
    await server.sink.until(() => server.sink.frames.length === 5);
    expect(digest(server.sink.frames)).toStrictEqual(digest([0, 1, 2, 3, 4].map(sample)));
  });

  it('reassembles a frame written one byte at a time', async () => {
    const h = await harness();
    const raw = await h.raw();
    cleanup.push(() => raw.destroy());
    const server = await h.nth(0);
    const frames = [sample(0), sample(1)];
    const bytes = Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
    for (let i = 0; i < bytes.length; i++) {
      await writeAsync(raw, bytes.subarray(i, i + 1));
      if (i % 16 === 0) await nextTurn(); // let the server read partial frames
    }
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(server.sink.frames.map((f) => f.body)).toStrictEqual(frames.map((f) => Buffer.from(f.body)));
    expect(server.sink.errors).toEqual([]);
  });

  it('splits frames coalesced into one write', async () => {
    const h = await harness();
    const raw = await h.raw();
    cleanup.push(() => raw.destroy());
    const server = await h.nth(0);
    const frames = Array.from({ length: 200 }, (_, i) => sample(i));
    await writeAsync(raw, Buffer.concat(frames.map((f) => encodeFrame(f.codecByte, f.body))));
    await server.sink.until(() => server.sink.frames.length === 200);
    expect(digest(server.sink.frames)).toStrictEqual(digest(frames));
  });

  it('reports an oversize frame as frame_too_large from its header alone, and stops delivering', async () => {
    const h = await harness();
    const raw = await h.raw();
    cleanup.push(() => raw.destroy());
    const server = await h.nth(0);
    const ok = sample(0);
    const header = Buffer.alloc(5);
    header.writeUInt32BE(MAX_FRAME + 1, 0);
    header[4] = CODEC_JSON;
    // A good frame, then only the header of a frame too large: no body byte is ever sent.
    await writeAsync(raw, Buffer.concat([encodeFrame(ok.codecByte, ok.body), header]));
    await server.sink.until(() => server.sink.errors.length === 1);
    expect(server.sink.errors[0]!.code).toBe('frame_too_large');
    expect(server.sink.frames).toHaveLength(1);

    // Whatever follows is dropped, and the owner's Error frame and close still reach the peer.
    await writeAsync(raw, encodeFrame(ok.codecByte, ok.body));
    const received: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = once(raw, 'end');
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
    const raw = await h.raw();
    cleanup.push(() => raw.destroy());
    const server = await h.nth(0);
    await writeAsync(raw, Uint8Array.of(0, 0, 0, 10, 0x07));
    await server.sink.until(() => server.sink.errors.length === 1);
    expect(server.sink.errors[0]!.code).toBe('unsupported_codec');
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
    await sleep(20);
    expect(closing.sink.closes).toEqual([undefined]);
    expect(other.sink.closes).toEqual([undefined]);
    closing.conn.send(CODEC_JSON, sample(0).body); // a no-op, not a throw
  });

  it('reports an abrupt peer exit as closed, once', async () => {
    const h = await harness();
    const raw = await h.raw();
    const server = await h.nth(0);
    if (scheme === 'tcp') raw.resetAndDestroy(); // an RST, as from a crashed host
    else raw.destroy(); // Unix sockets have no reset
    await server.sink.until(() => server.sink.closes.length > 0);
    await sleep(20);
    expect(server.sink.closes).toHaveLength(1);
    expect(server.conn.isClosed).toBe(true);
  });

  // Both cases send at the same pace: one 8 KiB frame per event-loop turn, so the socket
  // can flush between sends and only a peer that stops reading lets the buffer grow.
  const FRAME = new Uint8Array(8 * 1024).fill(1);

  it('closes a connection whose peer never reads once its send buffer passes the limit', async () => {
    const h = await harness();
    const raw = await h.raw();
    cleanup.push(() => raw.destroy());
    raw.pause(); // the peer reads nothing
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
    expect(sent).toBeGreaterThan(SEND_LIMIT);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    await server.sink.until(() => server.sink.closes.length > 0);
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/send buffer passed 65536 bytes; the peer is not reading/);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(128 * 1024 * 1024);
    server.conn.send(CODEC_MSGPACK, FRAME); // dropped, not queued
  });

  it('keeps a connection whose peer reads, at the same limit and pace', async () => {
    const h = await harness();
    const client = await h.dial();
    const server = await h.nth(0);
    const count = 1024; // 8 MiB in all, far past the 64 KiB limit
    for (let i = 0; i < count; i++) {
      server.conn.send(CODEC_MSGPACK, FRAME);
      await nextTurn();
    }
    await client.sink.until(() => client.sink.frames.length === count);
    expect(server.conn.isClosed).toBe(false);
    expect(server.sink.closes).toEqual([]);
  });

  it('closes only the connection whose frame handler throws, with the cause', async () => {
    const h = await harness(false);
    const a = await h.dial();
    const b = await h.dial();
    const [first, second] = [await h.nth(0), await h.nth(1)];
    const bug = new Error('owner bug');
    first.conn.start({
      frame: () => {
        throw bug;
      },
      error: (e) => first.sink.error(e),
      closed: (e) => first.sink.closed(e),
    });
    second.conn.start(second.sink);
    a.conn.send(CODEC_JSON, sample(0).body);
    b.conn.send(CODEC_JSON, sample(0).body);
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
    await expect(dial(new URL(h.server.url))).rejects.toThrow(/connect to .* failed/);
    // A goodbye after the listener closed still goes through, as a Shutdown frame must.
    server.conn.send(CODEC_JSON, sample(0).body);
    await client.sink.until(() => client.sink.frames.length === 1);
    await server.conn.close();
    await client.sink.until(() => client.sink.closes.length === 1);
    expect(server.sink.closes).toEqual([undefined]);
  });

  it('rejects a dial to an address nobody listens on', async () => {
    const h = await harness();
    const url = new URL(h.server.url);
    await h.server.close();
    await expect(dial(url)).rejects.toThrow(/connect to .* failed/);
  });
});

const DIAL_OPTIONS = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, connectTimeoutMs: 5_000 };
const dial = (url: URL, connectTimeoutMs = 5_000): Promise<Connection> =>
  transportFor(url).dial(url, { ...DIAL_OPTIONS, connectTimeoutMs });

describe('tcp transport dialing', () => {
  it('rejects a URL without a port', async () => {
    await expect(dial(new URL('tcp://127.0.0.1'))).rejects.toThrow(/host:port/);
  });

  // A listener with a full backlog that never accepts makes the kernel drop further SYNs, so the
  // connect hangs. Node always accepts, hence a tiny Python listener when Python is there.
  const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
  const pythonListener = [
    'import socket, time',
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    'print(s.getsockname()[1], flush=True)',
    'time.sleep(60)',
  ].join('\n');

  it.skipIf(python === undefined)('gives up after connectTimeoutMs with an Error', async () => {
    const child = spawn(python!, ['-c', pythonListener], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const port = Number(line.toString().trim());
      const fillers = [0, 1, 2].map(() => net.connect({ host: '127.0.0.1', port }).on('error', () => {}));
      try {
        await expect(dial(new URL(`tcp://127.0.0.1:${port}`), 300)).rejects.toThrow(/timed out after 300 ms/);
      } finally {
        for (const f of fillers) f.destroy();
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('unix transport socket file', () => {
  const listenAt = (url: string): Promise<TransportServer> =>
    transportFor(new URL(url)).listen(new URL(url), {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      onConnection: (c) => void c.close(),
    });

  it('removes the socket file on close', async () => {
    const file = path.join(tmpDir, 'close.sock');
    const server = await listenAt(`unix://${file}`);
    expect(fs.statSync(file).isSocket()).toBe(true);
    await server.close();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('replaces a stale socket file left by a killed process', async () => {
    const file = path.join(tmpDir, 'stale.sock');
    const script = "require('net').createServer().listen(process.argv[1], () => console.log('up'))";
    const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(fs.statSync(file).isSocket()).toBe(true); // left behind, nobody listening

    const server = await listenAt(`unix://${file}`);
    const conn = await dial(new URL(server.url));
    await conn.close();
    await server.close();
  });

  it('refuses a path where another server listens, or that is not a socket', async () => {
    const live = path.join(tmpDir, 'live.sock');
    const first = await listenAt(`unix://${live}`);
    await expect(listenAt(`unix://${live}`)).rejects.toThrow(/another process is listening/);
    await first.close();

    const plain = path.join(tmpDir, 'plain.txt');
    fs.writeFileSync(plain, 'keep me');
    await expect(listenAt(`unix://${plain}`)).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(plain, 'utf8')).toBe('keep me');
  });

  it('rejects a URL that is not an absolute path', async () => {
    await expect(listenAt('unix://relative/x.sock')).rejects.toThrow(/unix:\/\/\/absolute\/path/);
  });

  it('round-trips a path with a space and a # through its URL', async () => {
    const file = path.join(tmpDir, 'with space #1.sock');
    const server = await listenAt(`unix://${encodeURI(file).replace('#', '%23')}`);
    expect(decodeURIComponent(new URL(server.url).pathname)).toBe(file);
    const conn = await dial(new URL(server.url));
    await conn.close();
    await server.close();
  });
});
