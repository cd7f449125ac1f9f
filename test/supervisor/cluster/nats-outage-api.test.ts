// A replica's admin API while its NATS server does not answer (SIGSTOP: the connection looks up,
// requests time out) or is gone (kill -9: the connection is away): routes that read or write the
// store, or ask the cluster, answer 503 with `Retry-After` in the API's error shape, never 500;
// once the server is back they answer as before. A real nats-server and a real replica over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../../supervisor/control-plane.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { laneJob, Replicas } from './replica-fixture.js';

let nats: NatsServer;
const replicas = new Replicas(() => nats.url);
let plane: ControlPlane;
let token: string;

beforeAll(async () => {
  nats = await NatsServer.start();
  // A lease that outlives the outages, so the replica stays unfenced; requests time out quickly.
  plane = await replicas.start('outage-a', { http: '127.0.0.1:0', natsRequestTimeoutMs: 400, leaseTtlMs: 15_000, leaseRenewMs: 1_000 });
  token = await plane.tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
});

afterAll(async () => {
  nats?.resume();
  await replicas.stopAll();
  await nats?.stop();
});

function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${plane.httpUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

const submission = (): unknown => {
  const { job, execution_context: context } = laneJob('outage', ['true']);
  return { job, execution_context: context, selector: { tags: { lane: 'outage' } } };
};

const ROUTES = ['GET /v1/jobs/{id}', 'POST /v1/jobs', 'GET /v1/nodes'];

/** The three routes of the issue (ROUTES): a store read, a store write, a question to the cluster. */
async function answers(jobId: string): Promise<Response[]> {
  return [await call('GET', `/v1/jobs/${jobId}`), await call('POST', '/v1/jobs', submission()), await call('GET', '/v1/nodes')];
}

async function expectUnavailable(responses: Response[]): Promise<void> {
  for (const [i, response] of responses.entries()) {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    expect({ route: ROUTES[i], status: response.status, retryAfter: response.headers.get('retry-after'), code: body.error?.code }).toEqual({
      route: ROUTES[i],
      status: 503,
      retryAfter: '2',
      code: 'internal',
    });
    expect(body.error?.message).toMatch(/NATS/);
  }
}

/** Every route answers as it did before the outage (polled: the client reconnects on its own time). */
async function expectServedAgain(jobId: string): Promise<void> {
  await expect.poll(async () => (await answers(jobId)).map((r) => r.status), { timeout: 15_000, interval: 200 }).toEqual([200, 201, 200]);
}

async function submitted(): Promise<string> {
  const response = await call('POST', '/v1/jobs', submission());
  expect(response.status).toBe(201);
  return ((await response.json()) as { job_id: string }).job_id;
}

describe('the admin API while NATS does not answer', () => {
  it('answers 503 with Retry-After while the server is stopped (SIGSTOP), and normally once it runs again', async () => {
    const jobId = await submitted();
    await nats.pause();
    try {
      await expectUnavailable(await answers(jobId));
    } finally {
      nats.resume();
    }
    await expectServedAgain(jobId);
  });

  it('answers 503 with Retry-After while the server is gone (kill -9), and normally once it is back', async () => {
    const jobId = await submitted();
    await nats.kill9();
    await expect.poll(() => plane.api.cluster!().nats?.state, { timeout: 15_000 }).not.toBe('connected');
    await expectUnavailable(await answers(jobId));
    nats = await nats.restart();
    await expectServedAgain(jobId);
  });
});
