// The grpc and grpcs transports over real sockets on port 0: both run the transport
// contract (transport-contract.ts); then what only gRPC does, with raw grpc-js clients for what
// no Muster peer would send, a child process for a peer that dies or stops, and a throwaway PKI
// for grpcs.
import { describe, it, expect, afterEach } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import '../../transports/builtin.js';
import { transportFor, type ClientTlsOptions, type Connection, type ServerTlsOptions } from '../../transports/transport.js';
import { connectMethod, PROTO_PATH, type GrpcFrame } from '../../transports/grpc-frame.js';
import { grpcMessageLimit } from '../../transports/grpc-options.js';
import type { MusterError } from '../../protocol/errors.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { TcpProxy } from '../supervisor/cluster/tcp-proxy.js';
import { makeTestPki } from './test-certificates.js';
import { RecordingSink } from './recording-sink.js';
import {
  Harness,
  MAX_FRAME,
  dial as dialWith,
  digest,
  nextTurn,
  sample,
  transportContract,
  type HarnessOptions,
  type TransportFixture,
} from './transport-contract.js';

const SEND_LIMIT = 64 * 1024;

const pki = makeTestPki();
const SERVER_TLS: ServerTlsOptions = { cert: pki.server.cert, key: pki.server.key, requireClientCert: false };
const MUTUAL_TLS: ServerTlsOptions = { ...SERVER_TLS, ca: pki.ca, requireClientCert: true };

const GRPC: TransportFixture = {
  name: 'grpc',
  kind: 'grpc',
  listenUrl: () => 'grpc://127.0.0.1:0',
  urlPattern: /^grpc:\/\/127\.0\.0\.1:[1-9]\d*$/,
  acceptedAddress: /^127\.0\.0\.1:\d+$/,
  dialedAddress: (url) => url.host,
  sendLimit: SEND_LIMIT,
  // A burst goes out as fast as HTTP/2 flow control lets it: the queue may hold all of it for a while.
  burstSendLimit: 4 * 1024 * 1024,
  carriesEncryptedCodecBytes: true,
  byteStream: false,
  refusedDial: /connect to grpc:.* failed: .*ECONNREFUSED/,
  vanishReason: /ended without our status/,
};

transportContract(GRPC);

transportContract({
  ...GRPC,
  name: 'grpcs',
  listenUrl: () => 'grpcs://127.0.0.1:0',
  urlPattern: /^grpcs:\/\/127\.0\.0\.1:[1-9]\d*$/,
  serverTls: SERVER_TLS,
  clientTls: { ca: pki.ca },
  refusedDial: /connect to grpcs:.* failed: .*ECONNREFUSED/,
});

/** The harness with raw grpc-js calls of its own. */
class GrpcHarness extends Harness {
  /** A plain grpc-js call, to send Frames no Muster peer would. */
  rawCall(options: grpc.ChannelOptions = {}, host = new URL(this.server.url).host): RawCall {
    const client = new grpc.Client(host, grpc.credentials.createInsecure(), options);
    this.onClose(() => client.close());
    return new RawCall(client);
  }
}

/** One raw `Connect` call: what it received, and its status. */
class RawCall {
  readonly call: grpc.ClientDuplexStream<GrpcFrame, GrpcFrame>;
  readonly received: GrpcFrame[] = [];
  readonly status: Promise<grpc.StatusObject>;
  private waiters: (() => void)[] = [];

  constructor(client: grpc.Client) {
    this.call = client.makeBidiStreamRequest(
      connectMethod.path,
      connectMethod.requestSerialize,
      connectMethod.responseDeserialize,
    );
    this.call.on('data', (frame: GrpcFrame) => {
      this.received.push(frame);
      for (const w of this.waiters.splice(0)) w();
    });
    this.call.on('error', () => {}); // the status below says it
    this.status = new Promise((resolve) => this.call.on('status', resolve));
  }

  send(frame: GrpcFrame): void {
    this.call.write(frame);
  }

  /** Resolves once `predicate` holds, checked on each received Frame; the test timeout bounds the wait. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
}

const DIAL_OPTIONS = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, connectTimeoutMs: 5_000 };
const dial = (url: URL, tls?: ClientTlsOptions): Promise<Connection> => dialWith(url, { tls, sendLimit: SEND_LIMIT });

/**
 * A node as a separate process, using grpc-js directly: it dials the harness, sends one frame,
 * reads whatever comes, and prints the call's status code when the call ends.
 */
async function nodeProcess(h: Harness): Promise<{ child: ChildProcess; status: Promise<number> }> {
  const script = `
    const grpc = require('@grpc/grpc-js');
    const loader = require('@grpc/proto-loader');
    const def = loader.loadSync(process.argv[1], { keepCase: true, defaults: true });
    const m = def['muster.v1.NodeLink'].Connect;
    const client = new grpc.Client(process.argv[2], grpc.credentials.createInsecure());
    const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize);
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', (s) => console.log('status ' + s.code));
    call.write({ codec: 1, body: Buffer.from('{}') }, () => console.log('sent'));
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['-e', script, PROTO_PATH, new URL(h.server.url).host], {
    cwd: process.cwd(), // where node_modules is
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  cleanup.push(() => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
  let output = '';
  const status = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /status (\d+)/.exec(output);
      if (match !== null) resolve(Number(match[1]));
    });
    child.once('exit', () => reject(new Error(`node process exited; it printed: ${output}`)));
  });
  status.catch(() => {}); // read by the tests that care
  while (!output.includes('sent')) await once(child.stdout!, 'data');
  return { child, status };
}

const errorFrame = (err: MusterError): Uint8Array => encodeBody(CODEC_JSON, { type: 'Error', data: err.toData() });

const harnesses: Harness[] = [];
const cleanup: (() => unknown)[] = [];
const harness = async (url = 'grpc://127.0.0.1:0', options: HarnessOptions = {}): Promise<GrpcHarness> => {
  const h = await new GrpcHarness(GRPC).listen(url, options);
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
  for (const h of harnesses.splice(0)) await h.close();
});

describe('grpc transport', () => {
  it('puts the codec byte on the wire as the Frame fields of muster.proto', async () => {
    const h = await harness();
    const raw = h.rawCall();
    raw.send({ codec: 2, body: Buffer.from('abc'), encrypted: true });
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    const peer = await h.nth(0);
    await peer.sink.until(() => peer.sink.frames.length === 2);
    expect(peer.sink.frames.map((f) => f.codecByte)).toEqual([0x82, 0x01]);
    peer.conn.send(0x81, Buffer.from('sealed'));
    peer.conn.send(CODEC_MSGPACK, Buffer.from('plain'));
    await raw.until(() => raw.received.length === 2);
    expect(raw.received.map((f) => [f.codec, f.encrypted, Buffer.from(f.body).toString()])).toEqual([
      [1, true, 'sealed'],
      [2, false, 'plain'],
    ]);
    expect(PROTO_PATH).toMatch(/protocol\/muster\.proto$/);
  });

  it.each([
    ['CODEC_UNSPECIFIED', 0],
    ['an unknown codec', 7],
  ])('reports %s as unsupported_codec and drops what follows', async (_name, codec) => {
    const h = await harness();
    const raw = h.rawCall();
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    raw.send({ codec, body: Buffer.from('{}'), encrypted: false });
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.errors.length === 1);
    expect(server.sink.errors[0]!.code).toBe('unsupported_codec');
    expect(server.conn.isClosed).toBe(false); // open until the owner closes it
    // The peer's half-close comes after its third Frame: once the call has ended, that Frame
    // was read, and dropped.
    raw.call.end();
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.frames).toHaveLength(1);
    expect(server.sink.errors).toHaveLength(1);
  });

  it('reports a raw Frame over maxFrameBytes amid good ones as frame_too_large, and the Error and status OK reach the peer', async () => {
    const h = await harness();
    const raw = h.rawCall();
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    raw.send({ codec: 2, body: Buffer.alloc(MAX_FRAME), encrypted: false }); // length MAX_FRAME + 1 with its codec byte
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.errors.length === 1);
    expect(server.sink.errors[0]!.code).toBe('frame_too_large');
    expect(server.sink.frames).toHaveLength(1);

    server.conn.send(CODEC_JSON, errorFrame(server.sink.errors[0]!));
    await server.conn.close();
    const status = await raw.status;
    expect(status.code).toBe(grpc.status.OK);
    expect(raw.received).toHaveLength(1);
    expect(JSON.parse(Buffer.from(raw.received[0]!.body).toString('utf8'))).toMatchObject({
      type: 'Error',
      data: { code: 'frame_too_large', fatal: true },
    });
    expect(server.sink.frames).toHaveLength(1);
    expect(server.sink.closes).toEqual([undefined]);
  });

  it('reports a message over the gRPC limit as closed, and the peer gets RESOURCE_EXHAUSTED', async () => {
    const h = await harness();
    const raw = h.rawCall();
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    raw.send({ codec: 2, body: Buffer.alloc(grpcMessageLimit(MAX_FRAME) + 1), encrypted: false });
    const status = await raw.status;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.closes[0]?.message).toMatch(/RESOURCE_EXHAUSTED/);
    expect(server.sink.errors).toEqual([]);
    expect(server.conn.isClosed).toBe(true);
  });

  it("holds a compressed message (gRPC's own compression) to the same limit while it inflates: a bomb is RESOURCE_EXHAUSTED", async () => {
    const h = await harness(undefined, { compression: true });
    // Through a proxy that counts the bytes: the bomb must really travel compressed.
    const proxy = await TcpProxy.start(Number(new URL(h.server.url).port));
    h.onClose(() => proxy.close());
    // gzip (grpc-js's algorithm 2) for every message of this call: 8 MiB of zeros go as about 8 KiB.
    const raw = h.rawCall({ 'grpc.default_compression_algorithm': 2 }, `127.0.0.1:${proxy.port}`);
    raw.send({ codec: 1, body: Buffer.from('{"type":"x","padding":"' + 'y'.repeat(4096) + '"}'), encrypted: false });
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    expect(server.sink.frames[0]!.body.length).toBeGreaterThan(4096); // a compressed message within the limit arrives whole
    raw.send({ codec: 2, body: Buffer.alloc(8 * 1024 * 1024), encrypted: false });
    const status = await raw.status;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(proxy.upstreamBytes).toBeLessThan(1024 * 1024);
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.frames).toHaveLength(1);
  });

  it('compresses a dialed connection\'s bodies from the size it is told on, where the listener accepts it', async () => {
    const h = await harness(undefined, { compression: true });
    const proxy = await TcpProxy.start(Number(new URL(h.server.url).port));
    h.onClose(() => proxy.close());
    const client = await h.dial({ url: `grpc://127.0.0.1:${proxy.port}` });
    const server = await h.nth(0);
    const big = Buffer.from('{"type":"LogChunk","data":"' + 'line of a build log\\n'.repeat(2_000) + '"}');
    // Not told yet: the body goes as it is.
    let before = proxy.upstreamBytes;
    client.conn.send(CODEC_JSON, big);
    await server.sink.until(() => server.sink.frames.length === 1);
    expect(proxy.upstreamBytes - before).toBeGreaterThan(big.length);
    client.conn.compressFrom!(1024);
    before = proxy.upstreamBytes;
    client.conn.send(CODEC_JSON, big);
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(proxy.upstreamBytes - before).toBeLessThan(big.length / 20);
    expect(Buffer.from(server.sink.frames[1]!.body).equals(big)).toBe(true);
    // Under the size, and a body marked as not compressible (file bytes), go as they are.
    const small = Buffer.alloc(1000, 0x61);
    before = proxy.upstreamBytes;
    client.conn.send(CODEC_MSGPACK, small);
    client.conn.send(CODEC_MSGPACK, big, false);
    await server.sink.until(() => server.sink.frames.length === 4);
    expect(proxy.upstreamBytes - before).toBeGreaterThan(small.length + big.length);
  });

  it('answers grpc-accept-encoding: identity on a listener without compression, and a grpc-js client then compresses nothing', async () => {
    const h = await harness();
    const proxy = await TcpProxy.start(Number(new URL(h.server.url).port));
    h.onClose(() => proxy.close());
    const raw = h.rawCall({ 'grpc.default_compression_algorithm': 2 }, `127.0.0.1:${proxy.port}`);
    raw.send({ codec: 1, body: Buffer.from('{}'), encrypted: false });
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    // Once a frame came back, the client has read the listener's headers whatever they say.
    server.conn.send(CODEC_JSON, Buffer.from('{}'));
    await raw.until(() => raw.received.length === 1);
    const before = proxy.upstreamBytes;
    const zeros = Buffer.alloc(MAX_FRAME / 2);
    raw.send({ codec: 2, body: zeros, encrypted: false });
    await server.sink.until(() => server.sink.frames.length === 2);
    expect(proxy.upstreamBytes - before).toBeGreaterThan(zeros.length); // gzip would make it about 100 bytes
  });

  it('closes rather than send a frame over the gRPC limit, with the reason', async () => {
    const h = await harness();
    const client = await h.dial();
    const server = await h.nth(0);
    client.conn.send(CODEC_MSGPACK, new Uint8Array(grpcMessageLimit(MAX_FRAME) + 1));
    await client.sink.until(() => client.sink.closes.length === 1);
    expect(client.sink.closes[0]?.message).toMatch(/exceeds the gRPC message limit/);
    await server.sink.until(() => server.sink.closes.length === 1);
    expect(server.sink.frames).toEqual([]);
  });

  it('reports an abrupt client exit as closed, once, with a reason', async () => {
    const h = await harness();
    const node = await nodeProcess(h);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    node.child.kill('SIGKILL');
    await server.sink.until(() => server.sink.closes.length > 0);
    await h.probe();
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/ended without our status/);
    expect(server.conn.isClosed).toBe(true);
  });

  // One 8 KiB frame per event-loop turn, so the call can flush between sends and only a peer
  // that stops reading lets the queue grow.
  const FRAME = new Uint8Array(8 * 1024).fill(1);

  it('closes a connection whose peer stops reading once its send buffer passes the limit, and resets the call', async () => {
    const h = await harness();
    const node = await nodeProcess(h);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    // A stopped process reads nothing, so HTTP/2 flow control stops our writes. (A grpc-js
    // client that merely does not read its call would not do: grpc-js keeps reading for it.)
    node.child.kill('SIGSTOP');
    const cap = 256 * 1024 * 1024; // far beyond any window or socket buffer: reaching it means memory grew unbounded
    const rssBefore = process.memoryUsage().rss;
    let sent = 0;
    while (!server.conn.isClosed && sent < cap) {
      server.conn.send(CODEC_MSGPACK, FRAME);
      sent += FRAME.length;
      await nextTurn();
    }
    expect(server.conn.isClosed).toBe(true);
    expect(sent).toBeGreaterThan(SEND_LIMIT); // the flow-control window and socket buffers took some first
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    await server.sink.until(() => server.sink.closes.length > 0);
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/send buffer passed 65536 bytes; the peer is not reading/);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(128 * 1024 * 1024);
    server.conn.send(CODEC_MSGPACK, FRAME); // dropped, not queued
    // The call was reset, not left open: once it runs again, the peer learns so (CANCELLED).
    node.child.kill('SIGCONT');
    expect(await node.status).toBe(grpc.status.CANCELLED);
  });

  it('closes gracefully within CLOSE_TIMEOUT_MS, then resets a call whose peer does not read', async () => {
    const h = await harness(undefined, { sendLimit: 4 * 1024 * 1024 });
    const node = await nodeProcess(h);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    node.child.kill('SIGSTOP');
    for (let i = 0; i < 64; i++) server.conn.send(CODEC_MSGPACK, FRAME); // 512 KiB: more than the windows take
    await server.conn.close(); // resolves: the timeout bounds it
    expect(server.sink.closes).toHaveLength(1);
    expect(server.sink.closes[0]?.message).toMatch(/close timed out after \d+ ms with unsent data/);
    node.child.kill('SIGCONT');
    expect(await node.status).toBe(grpc.status.CANCELLED);
  });

  it('rejects a URL without a port', async () => {
    await expect(dial(new URL('grpc://127.0.0.1'))).rejects.toThrow(/host:port/);
  });
});

describe('grpc transport dialing', () => {
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
        const url = new URL(`grpc://127.0.0.1:${port}`);
        await expect(transportFor(url).dial(url, { ...DIAL_OPTIONS, connectTimeoutMs: 300 })).rejects.toThrow(
          /connect to grpc:.* timed out after 300 ms/,
        );
      } finally {
        for (const f of fillers) f.destroy();
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('grpcs transport', () => {
  it('carries frames both ways with a CA-signed server certificate', async () => {
    const h = await harness('grpcs://127.0.0.1:0', { tls: SERVER_TLS, sendLimit: 4 * 1024 * 1024 });
    expect(h.server.url).toMatch(/^grpcs:\/\/127\.0\.0\.1:[1-9]\d*$/);
    const client = await h.dial({ tls: { ca: pki.ca } });
    const server = await h.nth(0);
    const sent = [sample(0), sample(1), { codecByte: 0x82, body: new Uint8Array(MAX_FRAME - 1).fill(3) }];
    for (const f of sent) client.conn.send(f.codecByte, f.body);
    for (const f of sent) server.conn.send(f.codecByte, f.body);
    await server.sink.until(() => server.sink.frames.length === sent.length);
    await client.sink.until(() => client.sink.frames.length === sent.length);
    expect(digest(server.sink.frames)).toStrictEqual(digest(sent));
    expect(digest(client.sink.frames)).toStrictEqual(digest(sent));
    expect(server.conn.peerNames).toEqual([]); // no client certificate asked for
  });

  it('verifies the server name given as servername instead of the URL host', async () => {
    const h = await harness('grpcs://127.0.0.1:0', { tls: SERVER_TLS });
    const client = await h.dial({ tls: { ca: pki.ca, servername: 'localhost' } });
    client.conn.send(CODEC_JSON, sample(0).body);
    const server = await h.nth(0);
    await server.sink.until(() => server.sink.frames.length === 1);
    await expect(dial(new URL(h.server.url), { ca: pki.ca, servername: 'elsewhere.example' })).rejects.toThrow(
      /connect to grpcs:.* failed/,
    );
  });

  it('refuses a server whose certificate is not signed by the trusted CA', async () => {
    const h = await harness('grpcs://127.0.0.1:0', { tls: SERVER_TLS });
    await expect(dial(new URL(h.server.url), { ca: pki.otherCa.cert })).rejects.toThrow(/connect to grpcs:.* failed/);
    expect(h.accepted).toEqual([]);
  });

  it('refuses to listen without a certificate', async () => {
    await expect(harness('grpcs://127.0.0.1:0')).rejects.toThrow(/needs a certificate and key/);
  });

  describe('with mutual TLS', () => {
    /** A dial that must not yield a working connection: refused at connect, or closed with an error at once. */
    const expectRefused = async (h: Harness, tls: ClientTlsOptions): Promise<void> => {
      const outcome = await dial(new URL(h.server.url), tls).then(
        async (conn) => {
          const sink = new RecordingSink();
          conn.start(sink);
          conn.send(CODEC_JSON, sample(0).body);
          await sink.until(() => sink.closes.length > 0);
          return sink.closes[0];
        },
        (err: unknown) => err,
      );
      expect(outcome).toBeInstanceOf(Error);
      expect(h.accepted).toEqual([]);
    };

    it('refuses a client without a certificate', async () => {
      const h = await harness('grpcs://127.0.0.1:0', { tls: MUTUAL_TLS });
      await expectRefused(h, { ca: pki.ca });
    });

    it('refuses a client whose certificate another CA signed', async () => {
      const h = await harness('grpcs://127.0.0.1:0', { tls: MUTUAL_TLS });
      await expectRefused(h, { ca: pki.ca, ...pki.otherCa.client('runner-1', ['runner-1.example']) });
    });

    it('gives a client with a good certificate peerNames of its CN and DNS SANs', async () => {
      const h = await harness('grpcs://127.0.0.1:0', { tls: MUTUAL_TLS });
      const client = await h.dial({ tls: { ca: pki.ca, ...pki.client('runner-1', ['runner-1.ci.example']) } });
      client.conn.send(CODEC_JSON, sample(0).body);
      const server = await h.nth(0);
      await server.sink.until(() => server.sink.frames.length === 1);
      expect(server.conn.peerNames).toEqual(['runner-1', 'runner-1.ci.example']);
      expect(client.conn.peerNames).toEqual([]);
    });

    it('refuses to listen with requireClientCert and no CA', async () => {
      await expect(harness('grpcs://127.0.0.1:0', { tls: { ...SERVER_TLS, requireClientCert: true } })).rejects.toThrow(
        /needs a CA bundle/,
      );
    });
  });
});
