// `GET /v1/jobs/{id}/logs`: the job's log chunks in order, as a JSON array, or with `?follow=1`
// as server-sent events. A follow reads the store when the bus says the job changed or got log
// chunks (`PlaneApi.watchJob`), never on a timer, from the last cursor sent (`Last-Event-ID` or
// `?after=` resumes), and ends with an `end` event once the job is terminal and nothing is left
// to send, or as soon as the client goes away or the server closes.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { HttpError, notFound } from './api-errors.js';
import { TERMINAL_STATES, type LogRecord } from '../store/job-store.js';

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
  // Watching starts before the first read: an event between a read and the wait is not lost.
  const wakes = new Wakes();
  const unwatch = deps.api.watchJob(jobId, () => wakes.wake());
  let cursor = after;
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
      if (chunks.length === 0 && TERMINAL_STATES.has(job.state)) {
        const end = job.reason === undefined ? { state: job.state } : { state: job.state, reason: job.reason };
        await write(res, `event: end\ndata: ${JSON.stringify(end)}\n\n`, stop);
        break;
      }
      // Chunks just sent: read once more, the job may have ended meanwhile. Else wait for news.
      if (chunks.length > 0) continue;
      while (!(await wakes.next(deps.logKeepaliveMs, stop)) && !stop.aborted) await write(res, ':\n\n', stop);
    }
  } catch (err) {
    if (!stop.aborted) deps.logger.warn({ err, job_id: jobId }, 'log follow stream failed');
  } finally {
    unwatch();
    res.end();
  }
}

/** Wake-ups of one follow: remembered when none is awaited, so none is missed. */
class Wakes {
  #pending = false;
  #resolve: ((woken: boolean) => void) | undefined;

  wake(): void {
    this.#pending = true;
    this.#resolve?.(true);
  }

  /** True once woken (at once if a wake came since the last call); false after `ms` or on `stop`. */
  async next(ms: number, stop: AbortSignal): Promise<boolean> {
    if (!this.#pending && !stop.aborted) {
      await new Promise<boolean>((resolve) => {
        const done = (woken: boolean): void => {
          clearTimeout(timer);
          stop.removeEventListener('abort', aborted);
          this.#resolve = undefined;
          resolve(woken);
        };
        const aborted = (): void => done(false);
        const timer = setTimeout(() => done(false), ms);
        stop.addEventListener('abort', aborted, { once: true });
        this.#resolve = done;
      });
    }
    const woken = this.#pending;
    this.#pending = false;
    return woken;
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
