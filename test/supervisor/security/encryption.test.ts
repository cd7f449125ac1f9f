// Payload encryption end to end (PROTOCOL.md section 6): a real in-process control plane with
// `encryptKeyFile` set, and on its TCP, WebSocket and gRPC listeners a real Agent with the
// same key file that registers and runs a job; protocol clients on encrypted connections for
// what an agent never does: a frame with one bit flipped gets an encrypted, fatal
// `decrypt_failed` and the close, and a node speaking plaintext gets `decrypt_failed` too,
// while a healthy encrypted node on the same plane stays connected and keeps being served.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../../agent/agent.js';
import { createLogger } from '../../../observability/logger.js';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../../protocol/codec.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import { TERMINAL_STATES, type JobRecord } from '../../../supervisor/store/job-store.js';
import '../../../transports/builtin.js';
import { encrypted } from '../../../transports/encrypted-connection.js';
import { loadEncryptionKey, PayloadCipher } from '../../../transports/payload-cipher.js';
import { transportFor, type Connection } from '../../../transports/transport.js';
import { ProtocolClient, registerMessage } from '../../conformance/protocol-client.js';

const SCHEMES = ['tcp', 'ws', 'grpc'] as const;
type Scheme = (typeof SCHEMES)[number];

const logger = createLogger({ level: 'silent' });
const KEY = randomBytes(32);

let dir: string;
let keyFile: string;
let plane: ControlPlane;
const agents: Agent[] = [];
const clients: ProtocolClient[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-encryption-'));
  keyFile = path.join(dir, 'payload.key');
  fs.writeFileSync(keyFile, `${KEY.toString('base64')}\n`, { mode: 0o600 });
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: path.join(dir, 'plane'),
      tcp: '127.0.0.1:0',
      ws: '127.0.0.1:0',
      grpc: '127.0.0.1:0',
      unix: 'off',
      http: '127.0.0.1:0',
      heartbeatIntervalMs: 500,
      encryptKeyFile: keyFile,
    },
  });
  plane = await startControlPlane(config, logger);
});

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await plane.shutdown();
  fs.rmSync(dir, { recursive: true, force: true });
});

function urlOf(scheme: Scheme): string {
  const url = plane.nodeUrls.find((u) => u.startsWith(`${scheme}:`));
  if (url === undefined) throw new Error(`no ${scheme} listener in ${plane.nodeUrls.join(', ')}`);
  return url;
}

async function dialed(scheme: Scheme): Promise<Connection> {
  const url = new URL(urlOf(scheme));
  return transportFor(url).dial(url, { maxFrameBytes: 4 * 1_048_576, maxSendBufferBytes: 8 * 1_048_576, connectTimeoutMs: 5_000 });
}

/** A protocol client on an encrypted connection; `inner` is the transport's connection below it. */
async function encryptedClient(scheme: Scheme, cipher = new PayloadCipher(KEY)): Promise<{ client: ProtocolClient; inner: Connection }> {
  const inner = await dialed(scheme);
  const client = new ProtocolClient(encrypted(inner, cipher));
  clients.push(client);
  return { client, inner };
}

async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function submit(command: string[], tags: Record<string, string>): Promise<JobRecord> {
  return plane.api.submitJob(toNewJob({ job: { command }, selector: { tags }, max_attempts: 1 }, plane.api.defaults));
}

function nodeState(nodeId: string | undefined): string | undefined {
  return plane.api.listNodes().find((v) => v.node_id === nodeId)?.state;
}

describe.each(SCHEMES)('a plane with payload encryption, over %s', (scheme) => {
  it('serves a real agent with the same key file: it registers and completes a job', async () => {
    const agent = startAgent({
      urls: [urlOf(scheme)],
      token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }),
      workDir: path.join(dir, `agent-${scheme}`),
      tags: { enc: scheme },
      logger,
      encryptionKey: loadEncryptionKey(keyFile),
    });
    agents.push(agent);
    await until('the agent registers', () => agent.isRegistered);
    const job = await submit(['sh', '-c', 'echo "sealed $0"', scheme], { enc: scheme });
    let done: JobRecord | undefined;
    await until('the job ends', async () => {
      done = await plane.api.getJob(job.job_id);
      return done !== undefined && TERMINAL_STATES.has(done.state);
    });
    expect(done?.state).toBe('Completed');
    expect(done?.result?.stdout).toBe(`sealed ${scheme}\n`);
    expect(done?.node_id ?? agent.nodeId).toBe(agent.nodeId);
  });

  it('answers a frame with one bit flipped with an encrypted decrypt_failed and closes; a healthy node goes on', async () => {
    const token = await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const { client: healthy } = await encryptedClient(scheme);
    await healthy.register({ token, codec: 'msgpack', tags: { enc: `${scheme}-healthy` } });
    healthy.startHeartbeats(150);
    const { client: bad, inner } = await encryptedClient(scheme);
    await bad.register({ token, tags: { enc: `${scheme}-bad` } });

    const body = new PayloadCipher(KEY).encrypt(0x81, encodeBody(CODEC_JSON, { type: 'Heartbeat', data: {} }));
    body[body.length - 1]! ^= 0x01; // in the tag
    inner.send(0x81, body);

    // Read through the encrypted link: a plaintext reply would have failed to decrypt here.
    const error = await bad.next('Error');
    expect(error.message.data).toMatchObject({ code: 'decrypt_failed', fatal: true });
    await bad.closedWithin();
    expect(bad.unread()).toEqual([]);
    await until('the bad node is gone', () => nodeState(bad.nodeId) !== 'ready');

    // The healthy node is still connected, and still gets work.
    expect(healthy.isClosed).toBe(false);
    expect(nodeState(healthy.nodeId)).toBe('ready');
    const job = await submit(['true'], { enc: `${scheme}-healthy` });
    const assignment = await healthy.next('JobAssignment');
    expect(assignment.message.data.job_id).toBe(job.job_id);
    expect(assignment.codecByte).toBe(CODEC_MSGPACK);
    healthy.send({ type: 'JobRejected', data: { job_id: job.job_id, attempt: 1, reason: 'test over' } }, 'msgpack');
  });

  it('answers a node that speaks plaintext with decrypt_failed (encrypted, as every frame is) and closes', async () => {
    const { client, inner } = await encryptedClient(scheme);
    const token = await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const nodesBefore = plane.api.listNodes().length;
    // Sent below the encryption layer, as a node configured without the key sends it.
    inner.send(CODEC_JSON, encodeBody(CODEC_JSON, registerMessage({ token, hostname: `plain-${scheme}` })));
    const error = await client.next('Error');
    expect(error.message.data).toMatchObject({ code: 'decrypt_failed', fatal: true });
    await client.closedWithin();
    expect(plane.api.listNodes()).toHaveLength(nodesBefore);
  });

  it('answers a node with another key with decrypt_failed, which it cannot read either', async () => {
    const { client } = await encryptedClient(scheme, new PayloadCipher(randomBytes(32)));
    client.send(registerMessage({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) }));
    // Its own layer cannot authenticate the plane's reply: it reports that, then the plane closes.
    await expect(client.next()).rejects.toThrow(/bad frame/);
    await client.closedWithin();
  });
});
