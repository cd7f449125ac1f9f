// Compression bombs against a whole plane over WebSocket and gRPC, whose compression is their own
// (PROTOCOL.md section 8: permessage-deflate, gRPC message compression, "the same limit on the
// inflated size holds"); deflate.test.ts beside it does the same for the stream transports'
// `deflate`. A real in-process plane, a real agent as a bystander on the same transport running
// a job, and a raw registered client that sends, compressed: a bomb (a few KB on the wire, 64 MiB
// inflated: the transport cuts it while inflating, WebSocket close 1009 / gRPC
// RESOURCE_EXHAUSTED), a message that inflates past max_frame_bytes but within the transport's
// limit (the plane's fatal `frame_too_large`, as for a plain one), and a stream that does not
// inflate (WebSocket close 1007 / gRPC INTERNAL: the library refuses it before the plane sees a
// frame). Each costs the plane far less memory than the bomb's size, and the bystander's
// heartbeats go on and its job completes.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zlib, createDeflateRaw, createGzip, type DeflateRaw, type Gzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, type RawData } from 'ws';
import { startAgent, type Agent } from '../../../agent/agent.js';
import { createLogger } from '../../../observability/logger.js';
import { CODEC_JSON, encodeBody } from '../../../protocol/codec.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { TERMINAL_STATES } from '../../../supervisor/store/job-store.js';
import { WS_SUBPROTOCOL } from '../../../transports/websocket.js';
import { RawGrpcLink } from '../../conformance/raw-links.js';
import { registerNodeMessage } from '../node-client.js';
import { startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';

const MAX_FRAME = 1_048_576;
/** Inflated size of the bomb: 16 × the transports' limit (4 × max_frame_bytes). */
const BOMB_BYTES = 64 * 1024 * 1024;
/** Inflated size past max_frame_bytes and within the transports' limit. */
const OVERSIZE_BYTES = 2 * MAX_FRAME;
/** What the plane may grow by while it refuses one: far below the bomb, a few times the limit. */
const MEMORY_BOUND = 32 * 1024 * 1024;

let p: SecurityPlane;
let dir: string;
beforeAll(async () => {
  // Heartbeats every 200 ms, so the bystander's are seen soon; a silent node lives 10 s, so the
  // attacker, which never beats, is not expired (closed 1000) while a loaded plane inflates its bomb.
  p = await startSecurityPlane({ ws: '127.0.0.1:0', grpc: '127.0.0.1:0', heartbeatIntervalMs: 200, missedHeartbeats: 49 });
  dir = mkdtempSync(join(tmpdir(), 'muster-transport-compression-'));
});
afterAll(async () => {
  await p?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function urlOf(scheme: 'ws' | 'grpc'): string {
  const url = p.plane.nodeUrls.find((u) => u.startsWith(`${scheme}://`));
  if (url === undefined) throw new Error(`no ${scheme} listener in ${p.plane.nodeUrls.join(', ')}`);
  return url;
}

/** `zeros` zero bytes after `head`, compressed as `z` does, never held whole: a bomb costs us nothing to make. */
async function compressed(z: DeflateRaw | Gzip, head: Uint8Array, zeros: number, finish: 'end' | 'sync'): Promise<Buffer> {
  const out: Buffer[] = [];
  z.on('data', (chunk: Buffer) => out.push(chunk));
  const block = Buffer.alloc(1024 * 1024);
  z.write(head);
  for (let n = 0; n < zeros; n += block.length) {
    if (!z.write(block.subarray(0, Math.min(block.length, zeros - n)))) await once(z, 'drain');
  }
  if (finish === 'end') {
    z.end();
    await once(z, 'end');
  } else {
    await new Promise<void>((resolve) => z.flush(zlib.Z_SYNC_FLUSH, () => resolve()));
    z.close();
  }
  return Buffer.concat(out);
}

/** A permessage-deflate message body (RFC 7692 7.2.1): a sync-flushed raw DEFLATE stream without its last 4 bytes. */
async function deflatedMessage(zeros: number): Promise<Buffer> {
  const body = await compressed(createDeflateRaw(), new Uint8Array(0), zeros, 'sync');
  expect(body.subarray(-4)).toEqual(Buffer.from([0x00, 0x00, 0xff, 0xff]));
  return body.subarray(0, -4);
}

/** A gzip-compressed `muster.v1.Frame` {codec: MSGPACK, body: `zeros` zero bytes}, written field by field. */
async function gzippedFrame(zeros: number): Promise<Buffer> {
  const varint: number[] = [];
  for (let n = zeros; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      varint.push(n);
      break;
    }
    varint.push((n % 128) | 0x80);
  }
  // Field 1 (codec) varint 2; field 2 (body) length-delimited.
  return compressed(createGzip(), Uint8Array.from([0x08, 0x02, 0x12, ...varint]), zeros, 'end');
}

/** One client WebSocket frame, masked as a client's must be: FIN, RSV1 (compressed) and the opcode. */
function compressedWsFrame(payload: Buffer, opcode = 0x2): Buffer {
  let length: Buffer;
  if (payload.length < 126) {
    length = Buffer.from([0x80 | payload.length]);
  } else if (payload.length < 65536) {
    length = Buffer.alloc(3);
    length[0] = 0x80 | 126;
    length.writeUInt16BE(payload.length, 1);
  } else {
    length = Buffer.alloc(9);
    length[0] = 0x80 | 127;
    length.writeBigUInt64BE(BigInt(payload.length), 1);
  }
  const mask = randomBytes(4);
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i]! ^= mask[i & 3]!;
  return Buffer.concat([Buffer.from([0x80 | 0x40 | opcode]), length, mask, masked]);
}

/** What the attacker saw: the plane's messages (JSON), and how the connection ended. */
interface Outcome {
  messages: Array<{ type: string; data: Record<string, unknown> }>;
  /** WebSocket close code, or gRPC status code. */
  code: number;
}

/** A registered raw client that sends the given bytes as one compressed message. */
interface Attacker {
  send(): void;
  ended: Promise<Outcome>;
}

async function wsAttacker(payload: Buffer): Promise<Attacker> {
  // `ws` negotiates permessage-deflate and reads the plane's answers; the attack is written
  // under it, straight to its socket, so that its bytes are exactly these.
  const ws = new WebSocket(urlOf('ws'), WS_SUBPROTOCOL, { perMessageDeflate: true });
  ws.on('error', () => {});
  await once(ws, 'open');
  expect(ws.extensions).toContain('permessage-deflate');
  const messages: Outcome['messages'] = [];
  let registered: () => void = () => {};
  const ack = new Promise<void>((resolve) => (registered = resolve));
  ws.on('message', (data: RawData) => {
    const message = JSON.parse(String(data)) as Outcome['messages'][number];
    messages.push(message);
    if (message.type === 'RegisterAck') registered();
  });
  const ended = new Promise<Outcome>((resolve) => ws.once('close', (code: number) => resolve({ messages, code })));
  ws.send(JSON.stringify(registerNodeMessage({ token: await p.registrationToken(), hostname: 'attacker.example.test' })));
  await ack;
  const socket = (ws as unknown as { _socket: Socket })._socket;
  return { send: () => socket.write(compressedWsFrame(payload)), ended };
}

async function grpcAttacker(message: Buffer): Promise<Attacker> {
  const link = await RawGrpcLink.connect({ url: urlOf('grpc'), kind: 'grpc', maxFrameBytes: MAX_FRAME }, { 'grpc-encoding': 'gzip' });
  const messages: Outcome['messages'] = [];
  let registered: () => void = () => {};
  const ack = new Promise<void>((resolve) => (registered = resolve));
  link.start({
    frame: (_codec, body) => {
      const m = JSON.parse(Buffer.from(body).toString('utf8')) as Outcome['messages'][number];
      messages.push(m);
      if (m.type === 'RegisterAck') registered();
    },
    error: () => {},
    closed: () => {},
  });
  link.send(CODEC_JSON, encodeBody(CODEC_JSON, registerNodeMessage({ token: await p.registrationToken(), hostname: 'attacker.example.test' })));
  await ack;
  return { send: () => link.sendMessage(message, true), ended: link.status.then((code) => ({ messages, code: code ?? -1 })) };
}

const ATTACKS = {
  ws: {
    attacker: wsAttacker,
    bomb: () => deflatedMessage(BOMB_BYTES),
    oversize: () => deflatedMessage(OVERSIZE_BYTES),
    corrupt: Buffer.from([0xff, 0xff, 0xff, 0x00, 0x13, 0x37, 0x42]),
    // RFC 6455 7.4.1: 1009 message too big (cut while inflating), 1007 data not consistent with the message type.
    tooBig: 1009,
    undecodable: 1007,
    fatalClose: 1000,
  },
  grpc: {
    attacker: grpcAttacker,
    bomb: () => gzippedFrame(BOMB_BYTES),
    oversize: () => gzippedFrame(OVERSIZE_BYTES),
    corrupt: Buffer.from('this is no gzip stream'),
    tooBig: 8, // RESOURCE_EXHAUSTED
    undecodable: 13, // INTERNAL: grpc-js's "Failed to decompress message"
    fatalClose: 0, // the plane ends the call with status OK after its Error
  },
} as const;

describe.each(['ws', 'grpc'] as const)('compressed messages against a whole plane over %s', (scheme) => {
  const attack = ATTACKS[scheme];
  const marker = (): string => join(dir, `${scheme}-go`);
  let agent: Agent;
  let jobId: string;
  let disconnects = 0;
  let nodeId: string | undefined;

  beforeAll(async () => {
    agent = startAgent({
      urls: [urlOf(scheme)],
      token: await p.registrationToken(),
      workDir: join(dir, `agent-${scheme}`),
      logger: createLogger({ level: 'silent' }),
      tags: { bystander: scheme },
      heartbeatIntervalMs: 200,
    });
    agent.events.on('disconnected', () => (disconnects += 1));
    agent.events.once('registered', (e) => (nodeId = e.node_id));
    await until('the bystander registers', () => agent.isRegistered);
    // Runs until the test lets it finish: it is running through every attack.
    const command = ['sh', '-c', `while [ ! -e "$0" ]; do sleep 0.05; done; echo finished`, marker()];
    const job = await p.plane.api.submitJob(toNewJob({ job: { command }, selector: { tags: { bystander: scheme } }, max_attempts: 1 }, p.plane.api.defaults));
    jobId = job.job_id;
    await until('the bystander runs its job', async () => (await p.plane.api.getJob(jobId))?.state === 'Running');
  });
  afterAll(async () => agent?.stop());

  /** The bystander is still connected and its heartbeats still arrive. */
  async function bystanderBeating(): Promise<void> {
    const last = (): string | undefined => p.plane.api.listNodes().find((n) => n.node_id === nodeId)?.last_heartbeat;
    const before = last();
    await until('a new heartbeat from the bystander', () => last() !== before, 5_000);
    expect(disconnects).toBe(0);
    expect((await p.plane.api.getJob(jobId))?.state).toBe('Running');
  }

  it('cuts a bomb while it inflates, at the transport limit, at little cost to the plane', async () => {
    const bomb = await attack.bomb();
    expect(bomb.length).toBeLessThan(BOMB_BYTES / 500); // tens of KB on the wire
    const a = await attack.attacker(bomb);
    const before = process.memoryUsage().rss;
    a.send();
    const outcome = await a.ended;
    expect(outcome.code, `closed after ${JSON.stringify(outcome.messages.slice(1))}`).toBe(attack.tooBig);
    // The plane runs in this process: it held at most the transport's limit, never the 64 MiB.
    expect(process.memoryUsage().rss - before).toBeLessThan(MEMORY_BOUND);
    await bystanderBeating();
  });

  it('answers a message that inflates past max_frame_bytes (within the transport limit) with frame_too_large, fatal', async () => {
    const a = await attack.attacker(await attack.oversize());
    a.send();
    const outcome = await a.ended;
    expect(outcome.messages.at(-1)).toMatchObject({ type: 'Error', data: { code: 'frame_too_large', fatal: true } });
    expect(outcome.code).toBe(attack.fatalClose);
    await bystanderBeating();
  });

  it('refuses a compressed message that does not inflate, and the plane goes on', async () => {
    const a = await attack.attacker(attack.corrupt);
    a.send();
    const outcome = await a.ended;
    expect(outcome.code).toBe(attack.undecodable);
    expect(outcome.messages.map((m) => m.type)).toEqual(['RegisterAck']);
    await bystanderBeating();
  });

  it("completes the bystander's job, which ran through every attack on its one connection", async () => {
    writeFileSync(marker(), '');
    await until('the job ends', async () => TERMINAL_STATES.has((await p.plane.api.getJob(jobId))?.state ?? 'Queued'), 10_000);
    expect((await p.plane.api.getJob(jobId))?.state).toBe('Completed');
    expect((await p.plane.api.jobLogs(jobId))?.map((l) => l.data).join('')).toBe('finished\n');
    expect(disconnects).toBe(0);
  });
});
