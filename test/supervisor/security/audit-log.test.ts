// The audit log: JSON lines with the same fields every time, in the file and in the log, never a
// token or a secret, and a flood (100 failed registrations from one address) as a few lines with
// one suspicious_activity among them, not 100.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { AuditLog } from '../../../supervisor/security/audit-log.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { registerNodeMessage, type NodeClient } from '../node-client.js';
import { SECRET, startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';

/** A destination that keeps every line pino writes. */
function capture(): { stream: Writable; text: () => string; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const text = (): string => chunks.join('');
  return {
    stream,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const COMMON = ['time', 'event', 'address', 'node_id', 'jti', 'correlation_id', 'reason'];

const dirs: string[] = [];
let running: SecurityPlane | undefined;

afterEach(async () => {
  await running?.stop();
  running = undefined;
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-audit-'));
  dirs.push(dir);
  return path.join(dir, 'sub', 'audit.jsonl');
}

function fileLines(file: string): Record<string, unknown>[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('AuditLog', () => {
  it('appends one JSON line per event with the common fields, null when unknown, to a 0600 file and to the log', () => {
    const file = tempFile();
    const log = capture();
    const audit = new AuditLog({ path: file, logger: createLogger({ level: 'info', destination: log.stream }) });
    audit.record({ event: 'auth_succeeded', address: '10.1.2.3', node_id: 'n-1', jti: 'j-1', correlation_id: 'c-7', reason: 'registered' });
    audit.record({ event: 'connection_opened', address: '10.1.2.3', correlation_id: 'c-8' });
    audit.close();
    const [first, second] = fileLines(file);
    expect(Object.keys(first as object)).toEqual(COMMON);
    expect(first).toMatchObject({ event: 'auth_succeeded', address: '10.1.2.3', node_id: 'n-1', jti: 'j-1', correlation_id: 'c-7' });
    expect(Number.isNaN(Date.parse(String(first?.time)))).toBe(false);
    expect(second).toMatchObject({ event: 'connection_opened', node_id: null, jti: null, reason: null });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const logged = log.lines().filter((l) => l.audit === true);
    expect(logged.map((l) => l.event)).toEqual(['auth_succeeded', 'connection_opened']);
  });

  it('never writes anything shaped like a token, whatever field carries it', () => {
    const file = tempFile();
    const audit = new AuditLog({ path: file, logger: createLogger({ level: 'silent' }) });
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz';
    audit.record({ event: 'auth_failed', address: '10.1.2.3', reason: `bad token ${jwt} sent`, path: `/v1/${jwt}` });
    audit.close();
    const text = fs.readFileSync(file, 'utf8');
    expect(text).not.toContain('c2lnbmF0dXJlLWJ5dGVz');
    expect(fileLines(file)[0]).toMatchObject({ reason: 'bad token [token] sent' });
  });

  it('writes a throttled event once per key and window, and counts the rest on the next line', () => {
    const file = tempFile();
    let now = 0;
    const audit = new AuditLog({ path: file, logger: createLogger({ level: 'silent' }), clock: () => now, windowMs: 60_000 });
    for (let i = 0; i < 50; i++) audit.recordThrottled('rate_limited|10.1.2.3', { event: 'rate_limited', address: '10.1.2.3' });
    expect(audit.recordThrottled('rate_limited|10.9.9.9', { event: 'rate_limited', address: '10.9.9.9' })).toBe(true);
    now = 61_000;
    expect(audit.recordThrottled('rate_limited|10.1.2.3', { event: 'rate_limited', address: '10.1.2.3' })).toBe(true);
    audit.close();
    const lines = fileLines(file);
    expect(lines.map((l) => [l.address, l.suppressed ?? 0])).toEqual([
      ['10.1.2.3', 0],
      ['10.9.9.9', 0],
      ['10.1.2.3', 49],
    ]);
  });

  it('keeps a bounded number of throttle keys', () => {
    let now = 0;
    const audit = new AuditLog({ path: '', logger: createLogger({ level: 'silent' }), clock: () => now, maxKeys: 10 });
    for (let i = 0; i < 1_000; i++) audit.recordThrottled(`k-${i}`, { event: 'rate_limited' });
    // The most recent keys are still throttled; the earliest were forgotten to stay within 10.
    expect(audit.recordThrottled('k-999', { event: 'rate_limited' })).toBe(false);
    expect(audit.recordThrottled('k-0', { event: 'rate_limited' })).toBe(true);
    now = 1;
  });
});

describe('the plane’s audit log', () => {
  it('records a node’s connection, authentication and close, and failures, with address, node_id, jti and correlation id', async () => {
    const p = await startSecurityPlane({}, { withAudit: true });
    running = p;
    const token = await p.registrationToken();
    const c = await p.client();
    const ack = await c.register({ token });
    const nodeId = ack.data.node_id;
    await c.close();
    const refused = await p.client();
    const stranger = new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    refused.send(registerNodeMessage({ token: await stranger.mintRegistrationToken({ ttlSeconds: 600 }) }));
    await refused.closedWithin();
    await until('the close is recorded', () => p.auditLines().some((l) => l.event === 'connection_closed' && l.node_id === nodeId));

    const lines = p.auditLines();
    for (const line of lines) expect(Object.keys(line).slice(0, COMMON.length)).toEqual(COMMON);
    const jti = (JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as { jti: string }).jti;
    const ok = lines.find((l) => l.event === 'auth_succeeded');
    expect(ok).toMatchObject({ address: '127.0.0.1', node_id: nodeId, jti });
    const opened = lines.find((l) => l.event === 'connection_opened');
    expect(opened).toMatchObject({ address: '127.0.0.1', correlation_id: ok?.correlation_id });
    expect(lines.find((l) => l.event === 'connection_closed' && l.node_id === nodeId)).toMatchObject({
      correlation_id: ok?.correlation_id,
      reason: 'closed',
    });
    const failed = lines.find((l) => l.event === 'auth_failed');
    expect(failed).toMatchObject({ address: '127.0.0.1', code: 'auth_failed' });
    expect(failed?.correlation_id).not.toBe(ok?.correlation_id);
  });

  it('holds no token and no secret anywhere, in the file or in the log', async () => {
    const log = capture();
    const p = await startSecurityPlane({ failedAuthPerMinute: 3, banAfterViolations: 2, banSeconds: 60 }, { withAudit: true, logTo: log.stream });
    running = p;
    const secrets: string[] = [SECRET];
    const token = await p.registrationToken();
    const c = await p.client();
    const ack = await c.register({ token });
    secrets.push(token, ack.data.session_token);
    const viewer = await p.apiToken('viewer');
    secrets.push(viewer);
    expect((await p.http('POST', '/v1/jobs', viewer, { job: { command: ['true'] } })).status).toBe(403);
    const stranger = new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    for (let i = 0; i < 6; i++) {
      const bad = await stranger.mintRegistrationToken({ ttlSeconds: 600 });
      secrets.push(bad);
      const b = await p.client();
      b.send(registerNodeMessage({ token: bad }));
      await b.closedWithin();
      const apiBad = await stranger.mintApiToken({ role: 'admin', ttlSeconds: 600 });
      secrets.push(apiBad);
      await p.http('GET', '/v1/nodes', apiBad);
    }
    await until('the ban is recorded', () => p.auditLines().some((l) => l.event === 'address_banned'));

    const events = new Set(p.auditLines().map((l) => l.event));
    for (const e of ['connection_opened', 'auth_succeeded', 'auth_failed', 'access_denied', 'suspicious_activity', 'address_banned']) {
      expect(events, e).toContain(e);
    }
    const texts = { file: fs.readFileSync(path.join(p.dataDir, 'audit.jsonl'), 'utf8'), log: log.text() };
    expect(log.lines().filter((l) => l.audit === true).length).toBe(p.auditLines().length);
    for (const [where, text] of Object.entries(texts)) {
      for (const secret of secrets) {
        expect(text.includes(secret), `${where} holds a token or the secret`).toBe(false);
        // Nor the signature, the part that makes a token usable.
        const signature = secret.split('.')[2];
        if (signature !== undefined) expect(text.includes(signature), `${where} holds a token signature`).toBe(false);
      }
    }
  });

  it('turns 100 failed registrations from one address into one suspicious_activity line, not 100', async () => {
    const p = await startSecurityPlane({}, { withAudit: true });
    running = p;
    const stranger = new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    const bad = await stranger.mintRegistrationToken({ ttlSeconds: 600 });
    // All connected first, then all refused: 100 real failed registrations, not refusals at the door.
    const clients: NodeClient[] = [];
    for (let i = 0; i < 100; i++) clients.push(await p.client());
    for (const c of clients) c.send(registerNodeMessage({ token: bad }));
    const codes = await Promise.all(clients.map(async (c) => (await c.next('Error')).message.data.code));
    expect(codes.filter((code) => code === 'auth_failed')).toHaveLength(100);
    await Promise.all(clients.map((c) => c.closedWithin()));

    const lines = p.auditLines();
    expect(lines.filter((l) => l.event === 'suspicious_activity')).toMatchObject([{ address: '127.0.0.1' }]);
    // One line per failure within the budget (10 a minute; one more refills every 6 s).
    const failures = lines.filter((l) => l.event === 'auth_failed');
    expect(failures.length).toBeGreaterThanOrEqual(p.config.failedAuthPerMinute);
    expect(failures.length).toBeLessThanOrEqual(p.config.failedAuthPerMinute + 2);
    expect(lines.length).toBeLessThan(20);
    // The failures still count: the address is banned, and the ban is one line too.
    expect(lines.filter((l) => l.event === 'address_banned')).toHaveLength(1);
  });
});
