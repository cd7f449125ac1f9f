// Every error code of PROTOCOL.md section 4 that a node can provoke, produced by a raw client over
// real TCP against a real in-process control plane: code, `fatal`, `field`, `reply_to`, the codec of
// the answer, and what happens to the connection. Throughout, a second healthy node stays connected
// and must notice nothing (section 4 rule 10: bad input never affects another node).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import { SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../observability/logger.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { loadConfig, type Config } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import { TokenAuthority } from '../../supervisor/tokens/tokens.js';
import type { NodeView } from '../../supervisor/admin/wire-types.js';
import { heartbeatMessage, NodeClient, registerNodeMessage, type Received } from './node-client.js';

const SECRET = 'protocol-errors-test-secret-0123456789abcdef';
const SECRET_BYTES = new TextEncoder().encode(SECRET);
const REGISTER_TIMEOUT_MS = 1_000;
const HEARTBEAT_INTERVAL_MS = 1_000;
const OTHER_NODE_ID = '0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a';

const logger = createLogger({ level: 'silent' });

let dataDir: string;
let config: Config;
let plane: ControlPlane;
let url: string;
/** The healthy node connected through every test. */
let bystander: NodeClient;
/** Clients a test opened; destroyed after it. */
const opened: NodeClient[] = [];
/** Data dirs of the planes that the shutdown tests stop. */
const ownDirs: string[] = [];

function planeConfig(dir: string, unix = 'off'): Config {
  return loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      tcp: '127.0.0.1:0',
      unix,
      http: '127.0.0.1:0',
      ws: '127.0.0.1:0',
      grpc: '127.0.0.1:0',
      jwtSecret: SECRET,
      registerTimeoutMs: REGISTER_TIMEOUT_MS,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      // This suite fails authentication on purpose, many times a minute from one address: the
      // per-address budget (see rate-limits.test.ts) would refuse it after ten.
      failedAuthPerMinute: 0,
    },
  });
}

async function client(options: { allowHalfOpen?: boolean } = {}, target = url): Promise<NodeClient> {
  const c = await NodeClient.connect(target, options);
  opened.push(c);
  return c;
}

function registrationToken(o: { sub?: string; nodeType?: string } = {}, p: ControlPlane = plane): Promise<string> {
  return p.tokens.mintRegistrationToken({ ttlSeconds: 600, ...o });
}

/** A client registered with a fresh registration token. */
async function registered(codec: 'json' | 'msgpack' = 'json'): Promise<NodeClient> {
  const c = await client();
  await c.register({ token: await registrationToken(), codec });
  return c;
}

function view(nodeId: string | undefined, p: ControlPlane = plane): NodeView[] {
  return p.api.listNodes().filter((v) => v.node_id === nodeId);
}

let probes = 0;

/**
 * Sends a Heartbeat and waits until the plane has taken it: frames are handled in order, so
 * the answer to a probe sent after it (an unknown type, answered with a non-fatal Error) comes
 * only once the heartbeat was. The connection works, and the node is still known and live.
 */
async function heartbeatTaken(c: NodeClient, p: ControlPlane = plane): Promise<void> {
  const sent = Date.now();
  c.heartbeat();
  const id = `probe-${++probes}`;
  c.send({ type: 'Probe', id, data: {} });
  const answer = await c.next('Error');
  expect(answer.message).toMatchObject({ reply_to: id, data: { code: 'unknown_type', fatal: false } });
  const v = view(c.nodeId, p)[0];
  expect(v).toBeDefined();
  expect(Date.parse(v!.last_heartbeat)).toBeGreaterThanOrEqual(sent);
}

/** The connection is still usable and the node still `ready`, once. */
async function stillReady(c: NodeClient): Promise<void> {
  expect(c.isClosed).toBe(false);
  await heartbeatTaken(c);
  expect(c.unread()).toEqual([]);
  expect(view(c.nodeId).map((v) => v.state)).toEqual(['ready']);
}

/** Waits for an Error frame, checks its code and that fatal follows from it. */
async function expectError(c: NodeClient, code: string, fatal: boolean): Promise<Received<'Error'>> {
  const error = await c.next('Error');
  expect(error.message.data).toMatchObject({ code, fatal });
  return error;
}

/** A fatal Error, then the plane closes the connection, and nothing more arrives. */
async function expectFatal(c: NodeClient, code: string): Promise<Received<'Error'>> {
  const error = await expectError(c, code, true);
  await c.closedWithin();
  expect(c.unread()).toEqual([]);
  return error;
}

/** Length and codec byte of a frame header, without a body. */
function header(length: number, codecByte?: number): Uint8Array {
  const bytes = Buffer.alloc(codecByte === undefined ? 4 : 5);
  bytes.writeUInt32BE(length, 0);
  if (codecByte !== undefined) bytes[4] = codecByte;
  return bytes;
}

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-protocol-errors-'));
  config = planeConfig(dataDir, path.join(dataDir, 'muster.sock'));
  plane = await startControlPlane(config, logger);
  url = plane.nodeUrls.find((u) => u.startsWith('tcp:'))!;
  bystander = await NodeClient.connect(url);
  await bystander.register({ token: await registrationToken(), hostname: 'bystander.example.test' });
  bystander.startHeartbeats(HEARTBEAT_INTERVAL_MS / 4);
});

afterEach(async () => {
  for (const c of opened.splice(0)) c.destroy();
  // The other node noticed nothing: still connected, no frame it did not ask for, still ready.
  await stillReady(bystander);
});

afterAll(async () => {
  await bystander?.close();
  await plane?.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('malformed_frame', () => {
  it('closes on a frame of length 0, answering in JSON', async () => {
    const c = await client();
    c.sendRaw(header(0));
    const error = await expectFatal(c, 'malformed_frame');
    expect(error.codecByte).toBe(CODEC_JSON);
  });

  it('closes on a JSON body that does not decode', async () => {
    const c = await client();
    c.sendFrame(CODEC_JSON, Buffer.from('{"type": "RegisterNode", "data": '));
    await expectFatal(c, 'malformed_frame');
  });

  it('closes on a body that is not valid UTF-8', async () => {
    const c = await client();
    c.sendFrame(CODEC_JSON, Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]));
    await expectFatal(c, 'malformed_frame');
  });

  it('closes on an envelope that is an array', async () => {
    const c = await client();
    c.send([{ type: 'RegisterNode', data: {} }]);
    await expectFatal(c, 'malformed_frame');
  });

  it('answers a MessagePack envelope that is not a map in MessagePack', async () => {
    const c = await client();
    c.send('RegisterNode', 'msgpack');
    const error = await expectFatal(c, 'malformed_frame');
    expect(error.codec).toBe('msgpack');
  });

  it('closes a registered node on a malformed frame, without touching other nodes', async () => {
    const c = await registered();
    c.sendFrame(CODEC_JSON, Buffer.from('not json'));
    await expectFatal(c, 'malformed_frame');
  });
});

describe('frame_too_large', () => {
  it('answers a length over max_frame_bytes before any of the body is sent, and closes', async () => {
    const c = await client();
    c.sendRaw(header(config.maxFrameBytes + 1));
    const error = await expectFatal(c, 'frame_too_large');
    expect(error.codecByte).toBe(CODEC_JSON);
    expect(c.socket.bytesWritten).toBe(4);
  });

  it('accepts a length of exactly max_frame_bytes as far as the header goes', async () => {
    const c = await client();
    // The whole frame would be 1 MiB of padding; the header alone must not be refused.
    c.sendRaw(header(config.maxFrameBytes, CODEC_JSON));
    await expectError(c, 'register_timeout', true);
    await c.closedWithin();
  });
});

describe('unsupported_codec', () => {
  it('closes on codec byte 0x07, answering in JSON', async () => {
    const c = await client();
    c.sendFrame(0x07, encodeBody(CODEC_JSON, registerNodeMessage({ token: await registrationToken() })));
    const error = await expectFatal(c, 'unsupported_codec');
    expect(error.codecByte).toBe(CODEC_JSON);
  });

  it('closes on an unknown codec byte sent in the header alone', async () => {
    const c = await client();
    c.sendRaw(header(100, 0x07));
    await expectFatal(c, 'unsupported_codec');
  });
});

describe('not_registered and register_timeout', () => {
  it('closes when the first message is a Heartbeat, answering its id', async () => {
    const c = await client();
    c.send(heartbeatMessage(OTHER_NODE_ID, 'Ready', 'hb-1'));
    const error = await expectFatal(c, 'not_registered');
    expect(error.message.reply_to).toBe('hb-1');
  });

  it('closes when the first message is of a type this version does not know', async () => {
    const c = await client();
    c.send({ type: 'Hello', id: 'x-1', data: {} });
    const error = await expectFatal(c, 'not_registered');
    expect(error.message.reply_to).toBe('x-1');
  });

  it('closes a connection that sends no RegisterNode in time', async () => {
    const c = await client();
    const error = await expectFatal(c, 'register_timeout');
    expect(error.message.reply_to).toBeUndefined();
  });

  it('counts only a whole RegisterNode: a partial frame still times out', async () => {
    const c = await client();
    const frame = Buffer.from(encodeBody(CODEC_JSON, registerNodeMessage({ token: await registrationToken() })));
    c.sendRaw(header(frame.length + 1, CODEC_JSON));
    c.sendRaw(frame.subarray(0, 10));
    await expectFatal(c, 'register_timeout');
  });
});

describe('auth_failed and token_expired', () => {
  const nodesBefore = (): number => plane.api.listNodes().length;

  async function refused(token: string, code: string): Promise<void> {
    const before = nodesBefore();
    const c = await client();
    c.send(registerNodeMessage({ token, id: 'reg-7' }));
    const error = await expectFatal(c, code);
    expect(error.message.reply_to).toBe('reg-7');
    expect(error.message.data.message).not.toContain(token);
    expect(nodesBefore()).toBe(before);
  }

  function signed(claims: Record<string, unknown>, o: { aud?: string; iss?: string; expSeconds?: number; nbf?: number } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ scope: 'node:register', ...claims })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(o.iss ?? 'muster')
      .setAudience(o.aud ?? 'muster-node')
      .setJti(crypto.randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + (o.expSeconds ?? 600));
    if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
    return jwt.sign(SECRET_BYTES);
  }

  it('refuses a token signed with another secret', async () => {
    const other = new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    await refused(await other.mintRegistrationToken({ ttlSeconds: 600 }), 'auth_failed');
  });

  it('refuses a token with alg none', async () => {
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: 'muster', aud: 'muster-node', scope: 'node:register', jti: 'j-1', iat: now, exp: now + 600 };
    await refused(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`, 'auth_failed');
  });

  it('refuses a token for another audience', async () => {
    await refused(await signed({}, { aud: 'someone-else' }), 'auth_failed');
  });

  it('refuses a token of another issuer', async () => {
    await refused(await signed({}, { iss: 'not-muster' }), 'auth_failed');
  });

  it('refuses a token that is not yet valid', async () => {
    await refused(await signed({}, { nbf: Math.floor(Date.now() / 1000) + 3600 }), 'auth_failed');
  });

  it('refuses an admin API token', async () => {
    await refused(await plane.tokens.mintApiToken({ role: 'admin', ttlSeconds: 600 }), 'auth_failed');
  });

  it('refuses a token that is not a JWT', async () => {
    await refused('not-a-jwt', 'auth_failed');
  });

  it('refuses an expired token with token_expired', async () => {
    const past = new TokenAuthority(SECRET_BYTES, { now: () => new Date(Date.now() - 3_600_000) });
    await refused(await past.mintRegistrationToken({ ttlSeconds: 60 }), 'token_expired');
  });
});

describe('forbidden', () => {
  async function forbidden(o: Parameters<NodeClient['register']>[0]): Promise<void> {
    const before = plane.api.listNodes().length;
    const c = await client();
    c.send(registerNodeMessage({ ...o, id: 'reg-9' }));
    const error = await expectFatal(c, 'forbidden');
    expect(error.message.reply_to).toBe('reg-9');
    expect(plane.api.listNodes().length).toBe(before);
  }

  it('refuses a registration token bound to another hostname', async () => {
    await forbidden({ token: await registrationToken({ sub: 'someone-else.example.test' }) });
  });

  it('refuses a registration token bound to another node type', async () => {
    await forbidden({ token: await registrationToken({ nodeType: 'windows-arm64' }) });
  });

  it("refuses another node's session token in resume, and that node keeps its session", async () => {
    const thief = await registered();
    await forbidden({
      token: thief.sessionToken!,
      resume: { node_id: bystander.nodeId!, running_jobs: [], unacked_results: [] },
    });
    await stillReady(thief);
  });

  it('refuses a session token without resume', async () => {
    const c = await registered();
    await forbidden({ token: c.sessionToken! });
  });
});

describe('session_replaced', () => {
  it('replaces the live connection of a node that resumes: the old one gets session_replaced and is closed', async () => {
    const first = await registered();
    const nodeId = first.nodeId!;
    const second = await client();
    const ack = await second.register({
      token: first.sessionToken!,
      resume: { node_id: nodeId, running_jobs: [], unacked_results: [] },
    });
    expect(ack.data).toMatchObject({ node_id: nodeId, resumed: true });
    await expectFatal(first, 'session_replaced');
    expect(view(nodeId)).toHaveLength(1);
    await stillReady(second);
    expect(view(nodeId)).toHaveLength(1);
  });
});

describe('unknown_type (after registration)', () => {
  it('answers a type this version does not know and keeps the connection', async () => {
    const c = await registered();
    c.send({ type: 'Telemetry', id: 't-1', data: { anything: true } });
    const error = await expectError(c, 'unknown_type', false);
    expect(error.message.reply_to).toBe('t-1');
    expect(error.message.data.field).toBeUndefined();
    await stillReady(c);
  });

  it('answers a plane-to-node type sent by a node as unknown', async () => {
    const c = await registered();
    c.send({ type: 'RegisterAck', id: 't-2', data: {} });
    const error = await expectError(c, 'unknown_type', false);
    expect(error.message.reply_to).toBe('t-2');
    await stillReady(c);
  });
});

describe('invalid_message', () => {
  it('names the offending field of a RegisterNode and lets the node register afterwards', async () => {
    const c = await client();
    const bad = registerNodeMessage({ token: await registrationToken(), id: 'reg-1' }) as unknown as {
      data: { capabilities: { max_resources: { cpu_cores: unknown } } };
    };
    bad.data.capabilities.max_resources.cpu_cores = 'eight';
    c.send(bad);
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.data.field).toBe('data.capabilities.max_resources.cpu_cores');
    expect(error.message.reply_to).toBe('reg-1');
    await c.register({ token: await registrationToken() });
    await stillReady(c);
  });

  it('names a missing field of a registered node and keeps the connection', async () => {
    const c = await registered();
    const hb = heartbeatMessage(c.nodeId!, 'Ready', 'hb-3') as unknown as { data: Record<string, unknown> };
    delete hb.data.status;
    c.send(hb);
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.data.field).toBe('data.status');
    expect(error.message.reply_to).toBe('hb-3');
    await stillReady(c);
  });

  it('answers a message without data', async () => {
    const c = await registered();
    c.send({ type: 'Heartbeat', id: 'hb-4' });
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.data.field).toBe('data');
    expect(error.message.reply_to).toBe('hb-4');
    await stillReady(c);
  });

  it('answers an id that is too long, naming `id`', async () => {
    const c = await registered();
    c.send({ ...heartbeatMessage(c.nodeId!), id: 'x'.repeat(65) });
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.data.field).toBe('id');
    expect(error.message.reply_to).toBeUndefined();
    await stillReady(c);
  });

  it("answers a Heartbeat for another node's id, naming data.node_id", async () => {
    const c = await registered();
    c.heartbeat({ nodeId: bystander.nodeId!, id: 'hb-5' });
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.data.field).toBe('data.node_id');
    expect(error.message.reply_to).toBe('hb-5');
    await stillReady(c);
  });

  it('answers a second RegisterNode on a registered connection', async () => {
    const c = await registered();
    c.send(registerNodeMessage({ token: await registrationToken(), id: 'reg-2' }));
    const error = await expectError(c, 'invalid_message', false);
    expect(error.message.reply_to).toBe('reg-2');
    await stillReady(c);
    expect(view(c.nodeId)).toHaveLength(1);
  });
});

describe('the codec of answers', () => {
  it("answers a registered node in the codec of its RegisterNode, whatever the bad frame's codec", async () => {
    const c = await registered('msgpack');
    c.send({ type: 'Telemetry', id: 'm-7', data: {} }, 'json');
    const error = await expectError(c, 'unknown_type', false);
    expect(error.codecByte).toBe(CODEC_MSGPACK);
    expect(error.message.reply_to).toBe('m-7');
    c.send({ type: 'Heartbeat', id: 'm-8', data: {} }, 'msgpack');
    const invalid = await expectError(c, 'invalid_message', false);
    expect(invalid.codecByte).toBe(CODEC_MSGPACK);
    await stillReady(c);
  });

  it('answers in JSON a node that registered in JSON, even to a MessagePack frame', async () => {
    const c = await registered('json');
    c.send({ type: 'Telemetry', data: {} }, 'msgpack');
    const error = await expectError(c, 'unknown_type', false);
    expect(error.codecByte).toBe(CODEC_JSON);
    await stillReady(c);
  });

  it('answers in the codec of the frame at hand before registration', async () => {
    const c = await client();
    const bad = { type: 'RegisterNode', id: 'r-1', data: {} };
    c.send(bad, 'msgpack');
    expect((await expectError(c, 'invalid_message', false)).codecByte).toBe(CODEC_MSGPACK);
    c.send(bad, 'json');
    expect((await expectError(c, 'invalid_message', false)).codecByte).toBe(CODEC_JSON);
    c.send(bad, 'msgpack');
    expect((await expectError(c, 'invalid_message', false)).codecByte).toBe(CODEC_MSGPACK);
    const ack = await c.register({ token: await registrationToken(), codec: 'msgpack' });
    expect(ack.data.protocol_version).toBe(1);
    c.send({ type: 'Telemetry', data: {} }, 'json');
    expect((await expectError(c, 'unknown_type', false)).codecByte).toBe(CODEC_MSGPACK);
  });

  it('answers a RegisterNode refused in MessagePack in MessagePack', async () => {
    const c = await client();
    c.send(registerNodeMessage({ token: 'not-a-jwt' }), 'msgpack');
    const error = await expectFatal(c, 'auth_failed');
    expect(error.codecByte).toBe(CODEC_MSGPACK);
  });
});

describe('over a Unix socket', () => {
  const unixUrl = (): string => plane.nodeUrls.find((u) => u.startsWith('unix:'))!;

  it('applies the same rules: non-fatal errors keep a registered node, fatal ones close', async () => {
    const c = await client({}, unixUrl());
    await c.register({ token: await registrationToken(), codec: 'msgpack' });
    c.send({ type: 'Telemetry', id: 'u-1', data: {} });
    const error = await expectError(c, 'unknown_type', false);
    expect(error.codec).toBe('msgpack');
    expect(error.message.reply_to).toBe('u-1');
    await stillReady(c);
    const stranger = await client({}, unixUrl());
    stranger.sendRaw(header(0));
    await expectFatal(stranger, 'malformed_frame');
    await stillReady(c);
  });
});

describe('shutting down', () => {
  // A plane of its own for each test: shutting down the shared one would end the other tests.
  let own: ControlPlane;
  let ownUrl: string;

  beforeEach(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-protocol-shutdown-'));
    ownDirs.push(dir);
    own = await startControlPlane(planeConfig(dir), logger);
    ownUrl = own.nodeUrls[0]!;
  });

  afterEach(async () => {
    await own.shutdown();
  });

  afterAll(() => {
    for (const dir of ownDirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends every node Shutdown, then closes; a node dialling in afterwards is refused', async () => {
    const nodes = [await client({}, ownUrl), await client({}, ownUrl)];
    await nodes[0]!.register({ token: await registrationToken({}, own) });
    await nodes[1]!.register({ token: await registrationToken({}, own), codec: 'msgpack' });
    const stopping = own.shutdown('maintenance');
    for (const [i, node] of nodes.entries()) {
      const shutdown = await node.next('Shutdown');
      expect(shutdown.message.data).toEqual({ reason: 'maintenance', grace_period_ms: config.shutdownGraceMs });
      expect(shutdown.codec).toBe(i === 0 ? 'json' : 'msgpack');
      await node.closedWithin();
      expect(node.unread()).toEqual([]);
    }
    await stopping;
    expect(own.api.isReady()).toBe(false);
    // The listener is gone: a node learns it by a refused connection and reconnects elsewhere.
    const { port } = new URL(ownUrl);
    await expect(
      new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: Number(port) });
        s.once('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.once('error', reject);
      }),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('resolves only once the node connections are closed', async () => {
    // A node that keeps its side open after the plane's FIN: shutdown waits for it (bounded).
    const node = await client({ allowHalfOpen: true }, ownUrl);
    await node.register({ token: await registrationToken({}, own) });
    let stopped = false;
    const stopping = own.shutdown().then(() => (stopped = true));
    await node.next('Shutdown');
    await node.ended;
    // Still waiting for the node's connection: the admin API, closed after it, still answers.
    expect((await fetch(`${own.httpUrl}/healthz`)).status).toBe(200);
    expect(stopped).toBe(false);
    node.socket.end();
    await stopping;
    await node.closedWithin();
  });
});
