// `GET /v1/jobs/{id}/logs`: the job's log chunks in order, as a JSON array, or with `?follow=1`
// as server-sent events. A follow polls the plane every 200 ms from the last cursor sent
// (`Last-Event-ID` or `?after=` resumes), and ends with an `end` event once the job is terminal
// and nothing is left to send, or as soon as the client goes away or the server closes.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { HttpError, notFound } from './api-errors.js';
import { TERMINAL_STATES, type LogRecord } from '../store/job-store.js';

const POLL_MS = 200;
/**
 * A comment line is sent when nothing else was for this long, so a quiet job does not trip
 * idle timeouts of clients (undici's body timeout) and proxies.
 */
const KEEPALIVE_MS = 15_000;

interface LogsRequest {
  Params: { id: string };
  Querystring: { follow?: string; after?: string };
}

export function registerLogRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  app.get<LogsRequest>('/v1/jobs/:id/logs', { onRequest: requireRole(deps.tokens, 'viewer') }, async (request, reply) => {
    const jobId = request.params.id;
    const lastEventId = request.headers['last-event-id'];
    const after = parseCursor(typeof lastEventId === 'string' ? lastEventId : request.query.after);
    const chunks = await deps.api.jobLogs(jobId, after);
    if (chunks === undefined) throw notFound(`no job ${jobId}`);
    if (!isTrue(request.query.follow)) return chunks.map(toChunk);
    await streamLogs(reply, deps, jobId, after);
    return reply;
  });
}

async function streamLogs(reply: FastifyReply, deps: AdminRouteDeps, jobId: string, after: number | undefined) {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    // Reverse proxies (nginx) would otherwise hold the stream back.
    'x-accel-buffering': 'no',
  });
  // Headers now, not with the first chunk: a client waits for them before it reads anything.
  res.flushHeaders();
  const stop = AbortSignal.any([deps.closing, closeSignal(res)]);
  let cursor = after;
  let lastWrite = Date.now();
  try {
    while (!stop.aborted) {
      // The state is read before the chunks: a job seen terminal has stored all its chunks.
      const job = await deps.api.getJob(jobId);
      const chunks = await deps.api.jobLogs(jobId, cursor);
      if (job === undefined || chunks === undefined) break;
      for (const chunk of chunks) {
        await write(res, `id: ${chunk.cursor}\ndata: ${JSON.stringify(toChunk(chunk))}\n\n`, stop);
        cursor = chunk.cursor;
      }
      if (chunks.length > 0) {
        lastWrite = Date.now();
        continue;
      }
      if (TERMINAL_STATES.has(job.state)) {
        const end = job.reason === undefined ? { state: job.state } : { state: job.state, reason: job.reason };
        await write(res, `event: end\ndata: ${JSON.stringify(end)}\n\n`, stop);
        break;
      }
      if (Date.now() - lastWrite >= KEEPALIVE_MS) {
        await write(res, ':\n\n', stop);
        lastWrite = Date.now();
      }
      await sleep(POLL_MS, undefined, { signal: stop }).catch(() => undefined);
    }
  } catch (err) {
    if (!stop.aborted) deps.logger.warn({ err, job_id: jobId }, 'log follow stream failed');
  } finally {
    res.end();
  }
}

/** Only the fields of section 7, whatever else the store keeps. */
function toChunk(c: LogRecord): LogRecord {
  return { attempt: c.attempt, stream: c.stream, seq: c.seq, data: c.data, cursor: c.cursor };
}

/** Honours backpressure, so a slow reader does not make the server buffer a whole log. */
async function write(res: ServerResponse, text: string, stop: AbortSignal): Promise<void> {
  if (stop.aborted) throw new Error('stream closed');
  if (!res.write(text)) await once(res, 'drain', { signal: stop });
}

function closeSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => controller.abort());
  return controller.signal;
}

function parseCursor(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new HttpError(400, 'invalid_request', 'the log cursor (after, Last-Event-ID) must be a whole number', 'after');
  }
  return Number(text);
}

function isTrue(value: string | undefined): boolean {
  return value === '1' || value === 'true';
}
