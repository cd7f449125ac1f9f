// Loose API input (issue 8 item 10), over a real socket: an impossible deadline is refused, not
// rolled over; every number of a submission has a ceiling; what Node's parser and fastify refuse
// before any route (400, 408, 413, 414, 431, 404) is answered in the one `{error: {code, message}}`
// shape; and a client that trickles its headers is answered 408 and closed once its time is up.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { startAdminApi, type AdminApi } from '../../../supervisor/admin/api-server.js';
import { JOB_LIMITS } from '../../../supervisor/admin/job-request.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { FakePlaneApi } from './fake-plane-api.js';

const tokens = new TokenAuthority(randomBytes(32));
/** Short, so that the trickling client is cut off soon; the other requests finish well inside it. */
const HEADERS_TIMEOUT_MS = 1_000;
const REQUEST_TIMEOUT_MS = 2_000;

let plane: FakePlaneApi;
let server: AdminApi;
let operator: string;

beforeAll(async () => {
  plane = new FakePlaneApi();
  server = await startAdminApi({
    host: '127.0.0.1',
    port: 0,
    api: plane,
    tokens,
    logger: createLogger({ level: 'silent' }),
    timeouts: { headersMs: HEADERS_TIMEOUT_MS, requestMs: REQUEST_TIMEOUT_MS },
  });
  operator = await tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
});

afterAll(async () => server.close());

async function submit(body: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${server.url}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/** A raw socket to the API: what it was sent back, once the server closed it. */
function rawExchange(write: (socket: Socket) => void): Promise<string> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.once('error', reject);
    socket.once('close', () => resolve(answer));
    socket.once('connect', () => write(socket));
  });
}

/** Status and JSON body of a raw HTTP/1.1 answer. */
function parsed(answer: string): { status: number; body: unknown } {
  const [head = '', ...rest] = answer.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), body: JSON.parse(rest.join('\r\n\r\n')) as unknown };
}

const SHAPE = { error: { code: expect.any(String) as unknown, message: expect.any(String) as unknown } };

describe('POST /v1/jobs input', () => {
  it('refuses a deadline that names no real moment (2026-02-30 is not March 2nd)', async () => {
    for (const deadline of ['2026-02-30T12:00:00Z', '2026-13-01T00:00:00Z', '2026-01-01T24:00:00Z', '2026-06-31T00:00:00Z', '2025-02-29T00:00:00Z', '2026-01-01T00:00:60Z', 'tomorrow']) {
      const { status, json } = await submit({ job: { command: ['true'] }, deadline });
      expect({ deadline, status, json }).toMatchObject({ deadline, status: 400, json: { error: { code: 'invalid_request', field: 'deadline' } } });
    }
    expect((await submit({ job: { command: ['true'] }, deadline: '2028-02-29T23:59:59.5+02:00' })).status).toBe(201);
    expect(plane.submitted.at(-1)?.deadline).toBe('2028-02-29T21:59:59.500Z');
  });

  it('bounds every number of a submission', async () => {
    const cases: [unknown, string][] = [
      [{ job: { command: ['true'], timeout: { secs: 1e300, nanos: 0 } } }, 'job.timeout.secs'],
      [{ job: { command: ['true'], timeout: { secs: JOB_LIMITS.timeoutSecs + 1, nanos: 0 } } }, 'job.timeout.secs'],
      [{ job: { command: ['true'] }, max_attempts: 1e9 }, 'max_attempts'],
      [{ job: { command: ['true'], resource_requirements: { cpu_cores: 1e308 } } }, 'job.resource_requirements.cpu_cores'],
      [{ job: { command: ['true'], resource_requirements: { cpu_cores: 1025 } } }, 'job.resource_requirements.cpu_cores'],
      [{ job: { command: ['true'], resource_requirements: { memory_mb: 1e12 } } }, 'job.resource_requirements.memory_mb'],
      [{ job: { command: ['true'], resource_requirements: { disk_gb: 1e12 } } }, 'job.resource_requirements.disk_gb'],
      [{ job: { command: ['true'] }, execution_context: { build_number: 2 ** 60 } }, 'execution_context.build_number'],
    ];
    for (const [body, field] of cases) {
      expect({ field, ...(await submit(body)) }).toMatchObject({ field, status: 400, json: { error: { code: 'invalid_request', field } } });
    }
    const atTheCeiling = {
      job: { command: ['true'], timeout: { secs: JOB_LIMITS.timeoutSecs, nanos: 0 }, resource_requirements: { cpu_cores: JOB_LIMITS.cpuCores } },
      max_attempts: JOB_LIMITS.maxAttempts,
    };
    expect((await submit(atTheCeiling)).status).toBe(201);
  });

  it('bounds strings and maps of the selector and refuses control characters in its names', async () => {
    const cases: [unknown, string][] = [
      [{ job: { command: ['true'] }, selector: { runner_type: 'x'.repeat(129) } }, 'selector.runner_type'],
      [{ job: { command: ['true'] }, selector: { tags: { region: 'eu\n' } } }, 'selector.tags.region'],
      [{ job: { command: ['true'], name: 'x\x1b[2J' } }, 'job.name'],
      [{ job: { command: ['true'] }, execution_context: { git_ref: 'main\n' } }, 'execution_context.git_ref'],
    ];
    for (const [body, field] of cases) {
      expect({ field, ...(await submit(body)) }).toMatchObject({ field, status: 400, json: { error: { code: 'invalid_request', field } } });
    }
  });
});

describe('a job too big to send (issue 8 item 7)', () => {
  it('is refused with 400 naming max_frame_bytes, and nothing is stored', async () => {
    const before = plane.submitted.length;
    const defaults = plane.defaults as { maxFrameBytes: number };
    const frameLimit = defaults.maxFrameBytes;
    defaults.maxFrameBytes = 512 * 1024;
    try {
      const command = ['sh', '-c', ...Array.from({ length: 6 }, () => 'x'.repeat(100_000))];
      const { status, json } = await submit({ job: { command } });
      expect(status).toBe(400);
      expect(json).toMatchObject({ error: { code: 'invalid_request', field: 'job', message: expect.stringContaining('max_frame_bytes (524288)') as unknown } });
      expect(plane.submitted.length).toBe(before);
    } finally {
      defaults.maxFrameBytes = frameLimit;
    }
  });
});

describe('errors before any route, in the one shape', () => {
  const request = (lines: string[], body = ''): string => `${lines.join('\r\n')}\r\nconnection: close\r\n\r\n${body}`;

  it('answers 400 (not HTTP, a bad URL), 413, 414, 431 and 404 as {error: {code, message}}', async () => {
    const auth = `authorization: Bearer ${operator}`;
    const cases: [number, string][] = [
      [400, 'GARBAGE\r\n\r\n'],
      [400, request(['GET /v1/jobs/%E0%A4%A HTTP/1.1', 'host: x', auth])],
      [400, request(['POST /v1/jobs HTTP/1.1', 'host: x', auth, 'content-type: application/json', 'content-length: 5'], '{"a":')],
      [413, request(['POST /v1/jobs HTTP/1.1', 'host: x', auth, 'content-type: application/json', 'content-length: 2000000'], '{}')],
      [414, request([`GET /v1/jobs/${'a'.repeat(200)} HTTP/1.1`, 'host: x', auth])],
      [431, request(['GET /healthz HTTP/1.1', 'host: x', `x-padding: ${'a'.repeat(20_000)}`])],
      [404, request(['GET /v2/nothing HTTP/1.1', 'host: x', auth])],
    ];
    for (const [status, text] of cases) {
      const answer = parsed(await rawExchange((s) => s.write(text)));
      expect({ sent: text.slice(0, 40), ...answer }).toMatchObject({ sent: text.slice(0, 40), status, body: SHAPE });
    }
  });

  it('answers a client that trickles its headers 408 and closes the connection, while it is still sending', async () => {
    let trickle: NodeJS.Timeout | undefined;
    let sent = 0;
    const answer = await rawExchange((socket) => {
      socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ');
      // One byte every 20 ms, forever: the header never ends. Only the server's timeout stops it.
      trickle = setInterval(() => {
        if (socket.writable) socket.write('a', () => sent++);
      }, 20);
    });
    clearInterval(trickle);
    expect(parsed(answer)).toMatchObject({ status: 408, body: { error: { code: 'invalid_request', message: 'request not received in time' } } });
    expect(sent).toBeGreaterThan(0);
  });
});
