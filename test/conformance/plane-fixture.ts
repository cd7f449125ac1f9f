// The control planes the transport conformance suite runs against, in-process: one plain plane
// (tcp, ws, grpc, unix) and one with mutual TLS (tls, wss, grpcs), both with short protocol timers
// and a small send-buffer limit; plus the one table of transports the suite runs every case for,
// and the polling and node-view helpers the cases share.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../observability/logger.js';
import { loadConfig, type Config } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import type { NodeView } from '../../supervisor/admin/wire-types.js';
import type { ClientTlsOptions } from '../../transports/transport.js';
import { makeTestPki } from '../transports/test-certificates.js';

/** The shared HS256 secret of both planes, so a test can sign tokens of its own. */
export const JWT_SECRET = 'conformance-suite-secret-0123456789abcdef';
/** The hostname every test node registers with, and the one its client certificate names. */
export const NODE_HOSTNAME = 'runner-01.example.test';

/** Short protocol timers: every case that waits for one waits seconds, not minutes. */
export const TIMING = {
  registerTimeoutMs: 800,
  heartbeatIntervalMs: 300,
  missedHeartbeats: 3,
  acceptTimeoutMs: 3_000,
} as const;
/** How long a node may be silent before it is dead: missed heartbeats plus one grace interval (PROTOCOL.md 4.2, 4.8). */
export const LIVENESS_WINDOW_MS = TIMING.heartbeatIntervalMs * (TIMING.missedHeartbeats + 1);
/** Small, so that a node that stops reading passes it after a few large frames. */
export const MAX_SEND_BUFFER_BYTES = 256 * 1024;
export const MAX_FRAME_BYTES = 1_048_576;

/** How a transport carries frames: a byte stream with length prefixes, or one message per frame. */
export type TransportKind = 'stream' | 'websocket' | 'grpc';

/** One row of the suite's transport table. */
export interface TransportCase {
  /** The URL scheme, also the row's name. */
  scheme: 'tcp' | 'unix' | 'tls' | 'ws' | 'wss' | 'grpc' | 'grpcs';
  kind: TransportKind;
  /** Served by the TLS plane (with client certificates) rather than the plain one. */
  secure: boolean;
}

export const TRANSPORTS: readonly TransportCase[] = [
  { scheme: 'tcp', kind: 'stream', secure: false },
  { scheme: 'unix', kind: 'stream', secure: false },
  { scheme: 'tls', kind: 'stream', secure: true },
  { scheme: 'ws', kind: 'websocket', secure: false },
  { scheme: 'wss', kind: 'websocket', secure: true },
  { scheme: 'grpc', kind: 'grpc', secure: false },
  { scheme: 'grpcs', kind: 'grpc', secure: true },
];

/** Where a client dials: the URL and, for the TLS schemes, what it trusts and presents. */
export interface Target {
  url: string;
  kind: TransportKind;
  tls?: ClientTlsOptions;
  maxFrameBytes: number;
}

export interface PlaneFixture {
  plane: ControlPlane;
  config: Config;
  /** The client TLS options for this plane's listeners, when it serves TLS. */
  clientTls?: ClientTlsOptions;
  /** Stops the plane and removes its data dir. */
  close(): Promise<void>;
}

const logger = createLogger({ level: 'silent' });

/**
 * A plane with the given listeners (`HOST:PORT`, a path, or `off`), short timers, a small
 * send-buffer limit, and its own temp data dir; with `tls`, its TCP, WebSocket and gRPC
 * listeners require a client certificate from the test CA.
 */
export async function startFixturePlane(o: { tls: boolean }): Promise<PlaneFixture> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `muster-conformance-${o.tls ? 'tls' : 'plain'}-`));
  const overrides: Record<string, string | number | boolean> = {
    dataDir,
    tcp: '127.0.0.1:0',
    ws: '127.0.0.1:0',
    grpc: '127.0.0.1:0',
    // The Unix socket is never TLS: only the plain plane serves it.
    unix: o.tls ? 'off' : path.join(dataDir, 'node.sock'),
    http: '127.0.0.1:0',
    jwtSecret: JWT_SECRET,
    maxFrameBytes: MAX_FRAME_BYTES,
    maxSendBufferBytes: MAX_SEND_BUFFER_BYTES,
    // The suite fails authentication on purpose over every transport, all from 127.0.0.1: the
    // per-address budget (test/supervisor/security/rate-limits.test.ts) would start refusing it.
    failedAuthPerMinute: 0,
    ...TIMING,
  };
  let clientTls: ClientTlsOptions | undefined;
  if (o.tls) {
    const pki = makeTestPki();
    const write = (name: string, pem: string): string => {
      const file = path.join(dataDir, name);
      fs.writeFileSync(file, pem, { mode: 0o600 });
      return file;
    };
    Object.assign(overrides, {
      tlsCert: write('server.crt', pki.server.cert),
      tlsKey: write('server.key', pki.server.key),
      tlsCa: write('ca.crt', pki.ca),
      requireClientCert: true,
    });
    const client = pki.client(NODE_HOSTNAME, [NODE_HOSTNAME]);
    clientTls = { ca: pki.ca, cert: client.cert, key: client.key };
  }
  const config = loadConfig({ env: {}, overrides });
  const plane = await startControlPlane(config, logger);
  return {
    plane,
    config,
    ...(clientTls === undefined ? {} : { clientTls }),
    close: async () => {
      await plane.shutdown();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The bound URL of `scheme` on the fixture's plane. */
export function targetOf(fixture: PlaneFixture, t: TransportCase): Target {
  const url = fixture.plane.nodeUrls.find((u) => u.startsWith(`${t.scheme}://`));
  if (url === undefined) throw new Error(`the plane serves no ${t.scheme}:// listener (it serves ${fixture.plane.nodeUrls.join(', ')})`);
  return {
    url,
    kind: t.kind,
    maxFrameBytes: fixture.config.maxFrameBytes,
    ...(t.secure && fixture.clientTls !== undefined ? { tls: fixture.clientTls } : {}),
  };
}

/** Resolves once `predicate` holds, polling every 10 ms; fails after `timeoutMs`, naming `what`. */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Every `listNodes()` entry for `nodeId` (a node is never shown twice: at most one). */
export function viewsOf(plane: ControlPlane, nodeId: string | undefined): NodeView[] {
  return plane.api.listNodes().filter((v) => v.node_id === nodeId);
}

/** The state the plane shows for `nodeId`, or undefined when it does not list it. */
export function stateOf(plane: ControlPlane, nodeId: string | undefined): string | undefined {
  return viewsOf(plane, nodeId)[0]?.state;
}
