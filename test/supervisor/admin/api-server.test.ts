// The admin HTTP API over a real socket, with real tokens and an in-memory plane.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readSse, type SseEvent } from '../../../cli/sse-reader.js';
import { createLogger } from '../../../observability/logger.js';
import { startAdminApi, type AdminApi } from '../../../supervisor/admin/api-server.js';
import { TokenAuthority, type ApiRole } from '../../../supervisor/tokens/tokens.js';
import { FakePlaneApi } from './fake-plane-api.js';

const secret = randomBytes(32);
const tokens = new TokenAuthority(secret);
const logger = createLogger({ level: 'silent' });

let plane: FakePlaneApi;
let server: AdminApi;
const bearer: Partial<Record<ApiRole, string>> = {};

beforeAll(async () => {
  plane = new FakePlaneApi();
  server = await startAdminApi({ host: '127.0.0.1', port: 0, api: plane, tokens, logger });
  for (const role of ['viewer', 'operator', 'admin'] as const) {
    bearer[role] = await tokens.mintApiToken({ role, ttlSeconds: 600 });
  }
});

afterAll(async () => {
  await server.close();
});

beforeEach(() => {
  plane.jobs.clear();
  plane.submitted.length = 0;
  plane.drained.length = 0;
  plane.nodes.length = 0;
  plane.ready = true;
});

async function call(method: string, path: string, o: { token?: string; body?: unknown; raw?: string } = {}) {
  const headers: Record<string, string> = {};
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined || o.raw !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body)),
  });
  const text = await res.text();
  const json: unknown = res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : undefined;
  return { status: res.status, json, text, headers: res.headers };
}

function as(role: ApiRole): string {
  return bearer[role] as string;
}

async function queuedJob(): Promise<string> {
  const { json } = await call('POST', '/v1/jobs', { token: as('operator'), body: { job: { command: ['true'] } } });
  return (json as { job_id: string }).job_id;
}

function addNode(nodeId: string): void {
  plane.nodes.push({
    node_id: nodeId,
    hostname: 'runner-1',
    state: 'ready',
    connected: true,
    owner: 'cp-1',
    running_jobs: [],
    last_heartbeat: new Date().toISOString(),
    tags: {},
    transport: 'tcp',
    protocol_version: 1,
  });
}

describe('probes and metrics', () => {
  it('answers /healthz, /readyz and /metrics without a token', async () => {
    expect(await call('GET', '/healthz')).toMatchObject({ status: 200, json: { status: 'ok' } });
    expect((await call('GET', '/readyz')).status).toBe(200);
    plane.ready = false;
    expect((await call('GET', '/readyz')).status).toBe(503);
    const metrics = await call('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metrics.text).toContain('muster_jobs_total 1');
  });
});

describe('authentication', () => {
  it('answers 401 without a token, with the error shape', async () => {
    const res = await call('GET', '/v1/nodes');
    expect(res.status).toBe(401);
    expect(res.json).toEqual({ error: { code: 'unauthorized', message: expect.any(String) } });
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('answers 401 to a forged, an expired, a node and a garbage token', async () => {
    const forged = await new TokenAuthority(randomBytes(32)).mintApiToken({ role: 'admin', ttlSeconds: 600 });
    const past = new TokenAuthority(secret, { now: () => new Date(Date.now() - 3_600_000) });
    const expired = await past.mintApiToken({ role: 'admin', ttlSeconds: 60 });
    const node = await tokens.mintRegistrationToken({ ttlSeconds: 600 });
    for (const token of [forged, expired, node, 'not-a-jwt']) {
      const res = await call('GET', '/v1/stats', { token });
      expect(res.status).toBe(401);
      expect((res.json as { error: { code: string } }).error.code).toBe('unauthorized');
      expect(res.text).not.toContain('at ');
    }
    const expiredAnswer = await call('GET', '/v1/stats', { token: expired });
    expect((expiredAnswer.json as { error: { message: string } }).error.message).toMatch(/expired/);
  });

  it('enforces the role of every route', async () => {
    addNode('5b0f4a52-6a4e-4d1b-9a43-2d6f1f0c0a11');
    const jobId = await queuedJob();
    const routes: Array<{ method: string; path: string; body?: unknown; least: ApiRole; ok: number }> = [
      { method: 'POST', path: '/v1/jobs', body: { job: { command: ['true'] } }, least: 'operator', ok: 201 },
      { method: 'GET', path: `/v1/jobs/${jobId}`, least: 'viewer', ok: 200 },
      { method: 'GET', path: `/v1/jobs/${jobId}/logs`, least: 'viewer', ok: 200 },
      { method: 'POST', path: `/v1/jobs/${jobId}/cancel`, least: 'operator', ok: 202 },
      { method: 'GET', path: '/v1/nodes', least: 'viewer', ok: 200 },
      { method: 'POST', path: `/v1/nodes/${plane.nodes[0]?.node_id}/drain`, least: 'operator', ok: 202 },
      { method: 'GET', path: `/v1/nodes/${plane.nodes[0]?.node_id}`, least: 'viewer', ok: 200 },
      // The fake node is ready, not draining: an operator gets 409, a viewer still 403.
      { method: 'POST', path: `/v1/nodes/${plane.nodes[0]?.node_id}/undrain`, least: 'operator', ok: 409 },
      { method: 'GET', path: '/v1/stats', least: 'viewer', ok: 200 },
    ];
    const rank: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };
    for (const route of routes) {
      expect((await call(route.method, route.path, { body: route.body })).status, `${route.path} no token`).toBe(401);
      for (const role of ['viewer', 'operator', 'admin'] as const) {
        const res = await call(route.method, route.path, { token: as(role), body: route.body });
        const expected = rank[role] >= rank[route.least] ? route.ok : 403;
        expect(res.status, `${route.method} ${route.path} as ${role}`).toBe(expected);
        if (expected === 403) expect(res.json).toMatchObject({ error: { code: 'forbidden' } });
      }
    }
  });
});

describe('POST /v1/jobs', () => {
  it('fills every default into the stored job', async () => {
    const res = await call('POST', '/v1/jobs', { token: as('operator'), body: { job: { command: ['echo', 'hi'] } } });
    expect(res.status).toBe(201);
    const { job_id: jobId } = res.json as { job_id: string };
    expect(plane.jobs.has(jobId)).toBe(true);
    expect(res.headers.get('location')).toBe(`/v1/jobs/${jobId}`);
    expect(plane.submitted[0]).toEqual({
      job: {
        name: 'echo hi',
        image: '',
        command: ['echo', 'hi'],
        environment: {},
        timeout: { secs: 90, nanos: 500_000_000 },
        resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
      },
      execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
      priority: 'Normal',
      selector: {},
      max_attempts: 4,
    });
  });

  it('keeps what the client gave, drops unknown fields and stores the deadline in UTC', async () => {
    const body = {
      job: { name: 'build', command: ['make'], environment: { A: '1' }, timeout: { secs: 5, nanos: 0 }, extra: 1 },
      execution_context: { git_ref: 'main', secrets: { K: 'v' } },
      priority: 'Critical',
      deadline: '2030-01-02T03:04:05+02:00',
      selector: { runner_type: 'shell', tags: { os: 'linux' } },
      max_attempts: 1,
      unknown: true,
    };
    expect((await call('POST', '/v1/jobs', { token: as('admin'), body })).status).toBe(201);
    const stored = plane.submitted[0];
    expect(stored).toMatchObject({
      job: { name: 'build', environment: { A: '1' }, timeout: { secs: 5, nanos: 0 } },
      execution_context: { git_ref: 'main', secrets: { K: 'v' }, workspace_id: '' },
      priority: 'Critical',
      deadline: '2030-01-02T01:04:05.000Z',
      selector: { runner_type: 'shell', tags: { os: 'linux' } },
      max_attempts: 1,
    });
    expect(stored).not.toHaveProperty('unknown');
    expect(stored?.job).not.toHaveProperty('extra');
  });

  it('rejects a bad body with 400 invalid_request naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'job'],
      [{ job: {} }, 'job.command'],
      [{ job: { command: [] } }, 'job.command'],
      [{ job: { command: ['x', 3] } }, 'job.command.1'],
      [{ job: { command: ['x'] }, priority: 'Urgent' }, 'priority'],
      [{ job: { command: ['x'] }, max_attempts: 0 }, 'max_attempts'],
      [{ job: { command: ['x'] }, deadline: 'tomorrow' }, 'deadline'],
      [{ job: { command: ['x'], timeout: { secs: 1 } } }, 'job.timeout.nanos'],
      [[1, 2], 'body'],
    ];
    for (const [body, field] of cases) {
      const res = await call('POST', '/v1/jobs', { token: as('operator'), body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json, JSON.stringify(body)).toEqual({
        error: { code: 'invalid_request', message: expect.any(String), field },
      });
    }
    expect(plane.submitted).toHaveLength(0);
  });

  it('answers 400 to malformed JSON and to a missing body', async () => {
    const bad = await call('POST', '/v1/jobs', { token: as('operator'), raw: '{"job": ' });
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: { code: 'invalid_request' } });
    const empty = await call('POST', '/v1/jobs', { token: as('operator') });
    expect(empty.json).toMatchObject({ error: { code: 'invalid_request', field: 'body' } });
  });
});

describe('jobs, nodes and stats', () => {
  it('shows a job with its secrets redacted as ***', async () => {
    const body = { job: { command: ['x'] }, execution_context: { secrets: { TOKEN: 'hunter2' } } };
    const { json } = await call('POST', '/v1/jobs', { token: as('operator'), body });
    const jobId = (json as { job_id: string }).job_id;
    plane.end(jobId, 'Failed', { exitCode: 2 });
    const res = await call('GET', `/v1/jobs/${jobId}`, { token: as('viewer') });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ job_id: jobId, state: 'Failed', attempt: 1, result: { exit_code: 2 } });
    expect(res.text).not.toContain('hunter2');
    expect(res.json).toMatchObject({ execution_context: { secrets: { TOKEN: '***' } }, job: { command: ['x'] } });
  });

  it('answers 404 for unknown jobs, nodes and routes', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    for (const [method, path] of [
      ['GET', `/v1/jobs/${missing}`],
      ['GET', `/v1/jobs/${missing}/logs`],
      ['GET', `/v1/jobs/${missing}/logs?follow=1`],
      ['POST', `/v1/jobs/${missing}/cancel`],
      ['POST', `/v1/nodes/${missing}/drain`],
      ['POST', `/v1/nodes/${missing}/undrain`],
      ['GET', `/v1/nodes/${missing}`],
      ['GET', '/v1/nowhere'],
      ['DELETE', '/v1/jobs'],
    ] as const) {
      const res = await call(method, path, { token: as('admin') });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.json).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
    }
  });

  it('cancels, drains and lists', async () => {
    const jobId = await queuedJob();
    const cancel = await call('POST', `/v1/jobs/${jobId}/cancel`, { token: as('operator'), raw: '' });
    expect(cancel.status).toBe(202);
    expect(plane.jobs.get(jobId)?.cancel_requested).toBe(true);
    addNode('5b0f4a52-6a4e-4d1b-9a43-2d6f1f0c0a11');
    expect((await call('POST', `/v1/nodes/${plane.nodes[0]?.node_id}/drain`, { token: as('operator') })).status).toBe(202);
    expect(plane.drained).toEqual([plane.nodes[0]?.node_id]);
    expect((await call('GET', '/v1/nodes', { token: as('viewer') })).json).toEqual(plane.nodes);
    expect((await call('GET', `/v1/nodes/${plane.nodes[0]?.node_id}`, { token: as('viewer') })).json).toEqual(plane.nodes[0]);
    const undrain = await call('POST', `/v1/nodes/${plane.nodes[0]?.node_id}/undrain`, { token: as('operator') });
    expect(undrain).toMatchObject({ status: 409, json: { error: { code: 'conflict' } } });
    expect((await call('GET', '/v1/stats', { token: as('viewer') })).json).toMatchObject({ active_connections: 1 });
  });

  it('answers 500 internal without the text of a foreign error', async () => {
    const original = plane.stats.bind(plane);
    plane.stats = async () => {
      throw new Error('database file /secret/path is locked');
    };
    try {
      const res = await call('GET', '/v1/stats', { token: as('viewer') });
      expect(res.status).toBe(500);
      expect(res.json).toEqual({ error: { code: 'internal', message: 'internal error' } });
    } finally {
      plane.stats = original;
    }
  });
});

describe('GET /v1/jobs/{id}/logs', () => {
  it('lists the chunks in order as JSON, from a cursor with ?after=', async () => {
    const jobId = await queuedJob();
    const first = plane.appendLog(jobId, 'stdout', 'one\n');
    const second = plane.appendLog(jobId, 'stderr', 'two\n');
    const res = await call('GET', `/v1/jobs/${jobId}/logs`, { token: as('viewer') });
    expect(res.json).toEqual([first, second]);
    expect((await call('GET', `/v1/jobs/${jobId}/logs?after=${first.cursor}`, { token: as('viewer') })).json).toEqual([
      second,
    ]);
  });

  it('follows over server-sent events until the job ends', async () => {
    const jobId = await queuedJob();
    const first = plane.appendLog(jobId, 'stdout', 'one\n');
    const res = await fetch(`${server.url}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${as('viewer')}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = readSse(res.body as ReadableStream<Uint8Array>);
    expect(await next(events)).toEqual({ event: 'message', id: String(first.cursor), data: JSON.stringify(first) });
    // Arrives while the stream is open and the job is still running.
    const second = plane.appendLog(jobId, 'stderr', 'two\n');
    expect(await next(events)).toEqual({ event: 'message', id: String(second.cursor), data: JSON.stringify(second) });
    const third = plane.appendLog(jobId, 'stdout', 'three\n');
    plane.end(jobId, 'Completed', { exitCode: 0 });
    expect(JSON.parse((await next(events)).data)).toEqual(third);
    expect(await next(events)).toEqual({ event: 'end', data: JSON.stringify({ state: 'Completed' }) });
    expect((await events.next()).done).toBe(true);
  });

  it('answers a follow at once, before the job has written anything', async () => {
    const jobId = await queuedJob();
    // Without early headers this fetch would hang until the job's first chunk.
    const res = await fetch(`${server.url}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${as('viewer')}` },
    });
    expect(res.status).toBe(200);
    const events = readSse(res.body as ReadableStream<Uint8Array>);
    plane.end(jobId, 'Cancelled', { reason: 'cancelled before it ran' });
    expect(await next(events)).toEqual({
      event: 'end',
      data: JSON.stringify({ state: 'Cancelled', reason: 'cancelled before it ran' }),
    });
  });

  it('resumes after Last-Event-ID', async () => {
    const jobId = await queuedJob();
    const first = plane.appendLog(jobId, 'stdout', 'one\n');
    const second = plane.appendLog(jobId, 'stdout', 'two\n');
    plane.end(jobId, 'TimedOut', { reason: 'ran past its timeout' });
    const res = await fetch(`${server.url}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${as('viewer')}`, 'last-event-id': String(first.cursor) },
    });
    const all = await collect(readSse(res.body as ReadableStream<Uint8Array>));
    expect(all).toEqual([
      { event: 'message', id: String(second.cursor), data: JSON.stringify(second) },
      { event: 'end', data: JSON.stringify({ state: 'TimedOut', reason: 'ran past its timeout' }) },
    ]);
  });

  it('reads the store only when the bus says the job changed: a quiet follow does not poll', async () => {
    // Keepalive comments every 50 ms mark time passing, without a sleep in the test.
    const own = await startAdminApi({ host: '127.0.0.1', port: 0, api: plane, tokens, logger, logKeepaliveMs: 50 });
    try {
      const jobId = await queuedJob();
      const other = await queuedJob();
      plane.appendLog(jobId, 'stdout', 'one\n');
      const res = await fetch(`${own.url}/v1/jobs/${jobId}/logs?follow=1`, { headers: { authorization: `Bearer ${as('viewer')}` } });
      const stream = new RawStream(res.body as ReadableStream<Uint8Array>);
      await stream.until((text) => text.includes('one'));
      const reads = plane.logPolls;
      // Four quiet periods (a 200 ms poll would have read the store at least once), and
      // another job's chunk, which this follow is not woken for.
      plane.appendLog(other, 'stdout', 'elsewhere\n');
      await stream.until((text) => text.split(':\n\n').length > 4);
      expect(plane.logPolls).toBe(reads);
      // A chunk of this job wakes it: one read sends it, one more finds nothing new.
      plane.appendLog(jobId, 'stdout', 'two\n');
      await stream.until((text) => text.includes('two'));
      expect(plane.logPolls - reads).toBeLessThanOrEqual(2);
      await stream.cancel();
    } finally {
      await own.close();
    }
  });

  it('stops watching the job when the client goes away', async () => {
    const jobId = await queuedJob();
    plane.appendLog(jobId, 'stdout', 'one\n');
    const abort = new AbortController();
    const res = await fetch(`${server.url}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${as('viewer')}` },
      signal: abort.signal,
    });
    const events = readSse(res.body as ReadableStream<Uint8Array>);
    await next(events);
    expect(plane.watchers.get(jobId)?.size).toBe(1);
    const unwatched = plane.unwatched(jobId);
    abort.abort();
    await unwatched;
    const reads = plane.logPolls;
    plane.appendLog(jobId, 'stdout', 'two\n');
    expect(plane.logPolls).toBe(reads);
  });

  it('ends open follows when the server closes', async () => {
    const own = await startAdminApi({ host: '127.0.0.1', port: 0, api: plane, tokens, logger });
    const jobId = await queuedJob();
    plane.appendLog(jobId, 'stdout', 'one\n');
    const res = await fetch(`${own.url}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${as('viewer')}` },
    });
    const events = readSse(res.body as ReadableStream<Uint8Array>);
    await next(events);
    await own.close();
    expect((await events.next()).done).toBe(true);
  });
});

async function next(events: AsyncGenerator<SseEvent>): Promise<SseEvent> {
  const item = await events.next();
  if (item.done === true) throw new Error('the event stream ended early');
  return item.value;
}

async function collect(events: AsyncGenerator<SseEvent>): Promise<SseEvent[]> {
  const all: SseEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

/** The raw text of a response body, read as far as a test needs (comments included, unlike readSse). */
class RawStream {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #text = '';

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  async until(done: (text: string) => boolean): Promise<string> {
    while (!done(this.#text)) {
      const { value, done: ended } = await this.#reader.read();
      if (ended) throw new Error(`the stream ended; it sent: ${this.#text}`);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
    return this.#text;
  }

  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}
