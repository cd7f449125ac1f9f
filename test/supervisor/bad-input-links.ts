// Links and checks for the bad-input catalogue (bad-input-catalogue.test.ts) that the existing
// helpers lack: protocol clients on an encrypted link and on TLS, a TLS handshake held before its
// last flight (to reach a plane that is already shutting down), a plane with TLS on its TCP
// listener, a key set of one Ed25519 and one P-256 key, and the bystander's checks.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { connect, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { expect } from 'vitest';
import { createLogger } from '../../observability/logger.js';
import { toNewJob } from '../../supervisor/admin/job-request.js';
import { loadConfig } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import '../../transports/builtin.js';
import { encrypted } from '../../transports/encrypted-connection.js';
import { PayloadCipher } from '../../transports/payload-cipher.js';
import { connectStream } from '../../transports/stream-connection.js';
import { tcpAddress } from '../../transports/tcp.js';
import { transportFor, type ClientTlsOptions, type Connection } from '../../transports/transport.js';
import { ProtocolClient } from '../conformance/protocol-client.js';
import { makeTestPki } from '../transports/test-certificates.js';
import type { NodeClient } from './node-client.js';
import { until } from './security-plane.js';

/** What the catalogue needs of a node link: a NodeClient (raw TCP, Unix) or a ProtocolClient. */
export type Link = Pick<NodeClient, 'nodeId' | 'isClosed' | 'unread' | 'next' | 'send' | 'closedWithin'> & { heartbeat(): void };

const DIAL = { maxFrameBytes: 4 * 1_048_576, maxSendBufferBytes: 8 * 1_048_576, connectTimeoutMs: 5_000 };

/** A protocol client on an encrypted link to `url`; `inner` is the connection below the encryption. */
export async function encryptedClient(url: string, key: Uint8Array): Promise<{ client: ProtocolClient; inner: Connection }> {
  const inner = await transportFor(new URL(url)).dial(new URL(url), DIAL);
  return { client: new ProtocolClient(encrypted(inner, new PayloadCipher(key))), inner };
}

/** A protocol client on a TLS link to `url` that trusts `ca`. */
export async function tlsClient(url: string, tls: ClientTlsOptions): Promise<ProtocolClient<Connection>> {
  return new ProtocolClient(await transportFor(new URL(url)).dial(new URL(url), { ...DIAL, tls }));
}

/**
 * A TLS connection whose handshake the plane has begun (it accepted the TCP connection and
 * answered the ClientHello) but cannot finish: the client's last flight is held until
 * `finish`, which answers a protocol client once the handshake is done.
 */
export async function heldTlsHandshake(url: string, ca: string): Promise<{ finish(): Promise<ProtocolClient<Connection>> }> {
  const raw = await new Promise<Socket>((resolve, reject) => {
    const s = connect(tcpAddress(new URL(url)));
    s.once('connect', () => resolve(s)).once('error', reject);
  });
  let held: (() => void)[] | undefined;
  const answered = new Promise<void>((resolve) => raw.once('data', () => resolve()));
  const gate = new Duplex({
    read: () => undefined,
    write: (chunk: Buffer, _encoding, done) => {
      if (held === undefined) raw.write(chunk, done);
      else held.push(() => raw.write(chunk, done));
    },
    final: (done) => raw.end(done),
    destroy: (err, done) => {
      raw.destroy();
      done(err);
    },
  });
  raw.on('data', (chunk: Buffer) => {
    // From the plane's first answer on, what the client writes is its last flight: held.
    held ??= [];
    gate.push(chunk);
  });
  raw.on('end', () => gate.push(null));
  const socket = tlsConnect({ socket: gate, ca, servername: 'localhost' });
  const connected = connectStream(socket as unknown as Socket, {
    ...DIAL,
    target: url,
    readyEvent: 'secureConnect',
    peerAddress: () => url,
  });
  await answered;
  return {
    finish: async () => {
      for (const write of held ?? []) write();
      held = undefined;
      return new ProtocolClient(await connected);
    },
  };
}

export interface TlsPlane {
  plane: ControlPlane;
  /** `tls://127.0.0.1:port` and `unix:///...` of the plane. */
  tlsUrl: string;
  unixUrl: string;
  ca: string;
  stop(): Promise<void>;
}

/** A plane with TLS on its TCP listener and a Unix socket, with `overrides` (security-plane.ts wants plain TCP). */
export async function startTlsPlane(secret: string, overrides: Record<string, string | number>): Promise<TlsPlane> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-catalogue-tls-'));
  const pki = makeTestPki();
  const [tlsCert, tlsKey] = [path.join(dir, 'server.pem'), path.join(dir, 'server.key')];
  fs.writeFileSync(tlsCert, pki.server.cert);
  fs.writeFileSync(tlsKey, pki.server.key, { mode: 0o600 });
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: path.join(dir, 'plane'),
      tcp: '127.0.0.1:0',
      ws: 'off',
      grpc: 'off',
      http: '127.0.0.1:0',
      unix: path.join(dir, 'node.sock'),
      tlsCert,
      tlsKey,
      jwtSecret: secret,
      revocationPollMs: 0,
      ...overrides,
    },
  });
  const plane = await startControlPlane(config, createLogger({ level: 'silent' }));
  const urlOf = (scheme: string): string => plane.nodeUrls.find((u) => u.startsWith(`${scheme}://`))!;
  return {
    plane,
    tlsUrl: urlOf('tls'),
    unixUrl: urlOf('unix'),
    ca: pki.ca,
    stop: async () => {
      await plane.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A key pair of the plane's key set, named by `kid`. */
export interface SetKey {
  kid: string;
  alg: 'EdDSA' | 'ES256';
  publicJwk: JWK;
  /** The public key as PEM (SPKI) text: what an attacker has. */
  publicPem: string;
  privateKey: CryptoKey;
}

export async function setKey(alg: SetKey['alg'], kid: string): Promise<SetKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, publicJwk: { ...(await exportJWK(publicKey)), kid }, publicPem: await exportSPKI(publicKey), privateKey };
}

/** Registration-token claims, valid now for ten minutes, with `overrides`. */
export function registerClaims(overrides: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { iss: 'muster', aud: 'muster-node', scope: 'node:register', jti: randomUUID(), iat: now, exp: now + 600, ...overrides };
}

/** Signs `claims` as they are, with whatever header and key a forger picks. */
export function forged(claims: JWTPayload, header: { alg: string; kid?: string }, key: CryptoKey | Uint8Array): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}

/** An unsigned token (`alg: none`), built by hand: jose will not make one. */
export function unsigned(claims: JWTPayload): string {
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
}

/** Sends a Heartbeat and waits until the plane has taken it (the node's `last_heartbeat` moves past it). */
export async function heartbeatTaken(plane: ControlPlane, link: Link): Promise<void> {
  const lastHeartbeat = (): number => Date.parse(plane.api.listNodes().find((v) => v.node_id === link.nodeId)?.last_heartbeat ?? '');
  const sent = Date.now();
  await until('the clock moves on', () => Date.now() > sent);
  link.heartbeat();
  await until(`the plane takes a Heartbeat of ${link.nodeId}`, () => lastHeartbeat() > sent);
}

/** Still connected, its heartbeats taken, still `ready`, and sent nothing it did not ask for. */
export async function unharmed(plane: ControlPlane, link: Link): Promise<void> {
  expect(link.isClosed).toBe(false);
  await heartbeatTaken(plane, link);
  expect(plane.api.listNodes().filter((v) => v.node_id === link.nodeId).map((v) => v.state)).toEqual(['ready']);
  expect(link.unread()).toEqual([]);
}

/** A job submitted now goes to `link` (the only live node), which accepts and completes it. */
export async function servesAJob(plane: ControlPlane, link: Link): Promise<void> {
  const job = await plane.api.submitJob(toNewJob({ job: { command: ['true'] }, max_attempts: 1 }, plane.api.defaults));
  const { job_id, attempt } = (await link.next('JobAssignment')).message.data;
  expect(job_id).toBe(job.job_id);
  link.send({ type: 'JobAccepted', data: { job_id, attempt } });
  const now = new Date().toISOString();
  const result = { status: 'Completed', exit_code: 0, stdout: '', stderr: '', artifacts: [], started_at: now, completed_at: now };
  const metrics = { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 };
  link.send({ type: 'JobResult', id: 'r-1', data: { job_id, attempt, node_id: link.nodeId, result, metrics } });
  expect((await link.next('JobResultAck')).message.data).toEqual({ job_id, attempt });
  expect((await plane.api.getJob(job_id))?.state).toBe('Completed');
}
