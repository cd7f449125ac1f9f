// The node listeners queue `listenBacklog` pending connections (Node's default of 511 overflows
// in a reconnect storm): the kernel shows a listening socket's backlog as its Send-Q (ss(8)).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { DEFAULTS, loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';

const BACKLOG = 1234;
let plane: ControlPlane;
let dataDir: string;

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-backlog-'));
  const config = loadConfig({
    env: {},
    overrides: { dataDir, tcp: '127.0.0.1:0', ws: '127.0.0.1:0', grpc: 'off', unix: path.join(dataDir, 'n.sock'), http: 'off', listenBacklog: BACKLOG },
  });
  plane = await startControlPlane(config, createLogger({ level: 'silent' }));
});

afterAll(async () => {
  await plane.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The Send-Q column of the listening socket (`ss -l`, `kind` -t or -x) bound to `local`. */
function backlogOf(kind: string, local: string): number | undefined {
  for (const line of execFileSync('ss', ['-lnH', kind], { encoding: 'utf8' }).split('\n')) {
    const columns = line.trim().split(/\s+/);
    const state = columns.indexOf('LISTEN');
    if (state >= 0 && columns[state + 3] === local) return Number(columns[state + 2]);
  }
  return undefined;
}

describe('listenBacklog', () => {
  it('defaults to 4096', () => {
    expect(DEFAULTS.listenBacklog).toBe(4096);
  });

  it('is the backlog of the TCP, WebSocket and Unix socket listeners', () => {
    const urls = plane.nodeUrls.map((u) => new URL(u));
    const tcp = urls.find((u) => u.protocol === 'tcp:')!;
    const ws = urls.find((u) => u.protocol === 'ws:')!;
    const unix = urls.find((u) => u.protocol === 'unix:')!;
    expect(backlogOf('-t', tcp.host)).toBe(BACKLOG);
    expect(backlogOf('-t', ws.host)).toBe(BACKLOG);
    expect(backlogOf('-x', unix.pathname)).toBe(BACKLOG);
  });
});
