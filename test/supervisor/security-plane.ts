// A real in-process control plane for the access-control, rate-limit and audit-log tests: its
// own temp data dir, TCP and HTTP on 127.0.0.1 port 0, the settings a test gives, raw node
// clients (test/supervisor/node-client.ts) and a small fetch wrapper for the admin API.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../observability/logger.js';
import { loadConfig, type Config } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import type { ApiRole } from '../../supervisor/tokens/tokens.js';
import { NodeClient, type Received } from './node-client.js';
import { TCP_ONLY } from './tcp-only.js';

export const SECRET = 'security-plane-test-secret-0123456789abcdef';

export interface HttpAnswer {
  status: number;
  json: unknown;
  text: string;
  headers: Headers;
}

export interface SecurityPlane {
  plane: ControlPlane;
  config: Config;
  dataDir: string;
  /** `tcp://127.0.0.1:port` of the plane. */
  tcpUrl: string;
  /** Dials the plane (`url` defaults to the TCP listener); closed by `stop`. */
  client(url?: string): Promise<NodeClient>;
  registrationToken(): Promise<string>;
  apiToken(role: ApiRole): Promise<string>;
  http(method: string, urlPath: string, token?: string, body?: unknown): Promise<HttpAnswer>;
  /** The audit file's lines, parsed (needs `auditLog` set, see `withAudit`). */
  auditLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/**
 * Starts a plane with `overrides` on top of test defaults; `withAudit` writes `<dataDir>/audit.jsonl`;
 * `logTo` gets the plane's log lines at level info (else it logs nothing).
 */
export async function startSecurityPlane(
  overrides: Record<string, string | number | boolean> = {},
  o: { withAudit?: boolean; logTo?: NodeJS.WritableStream } = {},
): Promise<SecurityPlane> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-security-'));
  const auditFile = path.join(dataDir, 'audit.jsonl');
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      ...TCP_ONLY,
      http: '127.0.0.1:0',
      jwtSecret: SECRET,
      revocationPollMs: 0,
      // Every test client is on loopback: the limits and bans under test must apply to it.
      banExemptCidrs: '',
      ...(o.withAudit === true ? { auditLog: auditFile } : {}),
      ...overrides,
    },
  });
  const logger = o.logTo === undefined ? createLogger({ level: 'silent' }) : createLogger({ level: 'info', destination: o.logTo });
  const plane = await startControlPlane(config, logger);
  const tcpUrl = plane.nodeUrls.find((u) => u.startsWith('tcp://'));
  if (tcpUrl === undefined) throw new Error(`no TCP listener among ${plane.nodeUrls.join(', ')}`);
  const clients: NodeClient[] = [];
  return {
    plane,
    config,
    dataDir,
    tcpUrl,
    client: async (url = tcpUrl) => {
      const c = await NodeClient.connect(url);
      clients.push(c);
      return c;
    },
    registrationToken: () => plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }),
    apiToken: (role) => plane.tokens.mintApiToken({ role, ttlSeconds: 600 }),
    http: async (method, urlPath, token, body) => {
      const headers: Record<string, string> = {};
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${plane.httpUrl}${urlPath}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      const json: unknown = res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : undefined;
      return { status: res.status, json, text, headers: res.headers };
    },
    auditLines: () =>
      fs
        .readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    stop: async () => {
      for (const c of clients) c.destroy();
      await plane.shutdown();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The first frame a fresh connection gets, without having sent anything, and that the plane then closes it. */
export async function refusedAtOnce(c: NodeClient): Promise<Received<'Error'>['message']['data']> {
  const error = await c.next('Error');
  await c.closedWithin();
  return error.message.data;
}

/** Resolves once `predicate` holds, polling; fails after `timeoutMs`. */
export async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
