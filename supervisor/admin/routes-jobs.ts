// Job routes of the admin HTTP API: submit (one job or a batch), list, read, attempts,
// cancel, retry (PROTOCOL.md section 7). Logs live in routes-logs.ts.
import type { FastifyInstance } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { HttpError, notFound } from './api-errors.js';
import { cursorAfter, parseJobListQuery } from './job-list-query.js';
import { isBatch, toNewJob, toNewJobs } from './job-request.js';
import type { AttemptRecord, JobRecord } from '../store/job-store.js';
import type { AttemptAnswer, BatchSubmitAnswer, JobAnswer, JobListAnswer, JobMoveAnswer } from './wire-types.js';

interface JobParams {
  id: string;
}

export function registerJobRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { api, tokens } = deps;

  app.post('/v1/jobs', { onRequest: requireRole(tokens, 'operator') }, async (request, reply) => {
    if (isBatch(request.body)) {
      // Every job checked before any is stored; then all are stored in one transaction.
      const records = await api.submitJobs(toNewJobs(request.body, api.defaults));
      deps.logger.info({ jobs: records.length }, 'job batch submitted over the admin API');
      const answer: BatchSubmitAnswer = { job_ids: records.map((r) => r.job_id) };
      return reply.code(201).send(answer);
    }
    // submitJob writes the one line of a new job ("job submitted", with its priority).
    const record = await api.submitJob(toNewJob(request.body, api.defaults));
    return reply.code(201).header('location', `/v1/jobs/${record.job_id}`).send({ job_id: record.job_id });
  });

  app.get<{ Querystring: Record<string, unknown> }>('/v1/jobs', { onRequest: requireRole(tokens, 'viewer') }, async (request) => {
    const { filter, limit } = parseJobListQuery(request.query);
    // One more than asked: whether there is a next page, without a second query.
    const records = await api.listJobs(filter, limit + 1);
    const page = records.slice(0, limit);
    // Queued jobs say why they wait, as `GET /v1/jobs/{id}` does (the jobs view lists them).
    const answer: JobListAnswer = {
      jobs: page.map((record) => {
        const job = toJobAnswer(record);
        const waitingFor = api.waitingFor?.(record);
        if (waitingFor !== undefined) job.waiting_for = waitingFor;
        return job;
      }),
    };
    const last = page.at(-1);
    if (records.length > limit && last !== undefined) answer.next_cursor = cursorAfter(last.seq);
    return answer;
  });

  app.get<{ Params: JobParams }>('/v1/jobs/:id/attempts', { onRequest: requireRole(tokens, 'viewer') }, async (request) => {
    const attempts = await api.jobAttempts(request.params.id);
    if (attempts === undefined) throw notFound(`no job ${request.params.id}`);
    return attempts.map(toAttemptAnswer);
  });

  app.post<{ Params: JobParams }>('/v1/jobs/:id/retry', { onRequest: requireRole(tokens, 'operator') }, async (request, reply) => {
    const outcome = await api.retryJob(request.params.id);
    if (outcome.status === 'not_found') throw notFound(`no job ${request.params.id}`);
    const { record } = outcome;
    if (outcome.status === 'refused') {
      throw new HttpError(409, 'conflict', `job ${record.job_id} is ${record.state}: only a job that ended Failed, TimedOut, Cancelled or DeadLettered can be retried`);
    }
    deps.logger.info({ job_id: record.job_id, attempt: record.attempt }, 'job retried over the admin API');
    const answer: JobMoveAnswer = { job_id: record.job_id, state: record.state, attempt: record.attempt };
    return reply.code(202).send(answer);
  });

  app.get<{ Params: JobParams }>('/v1/jobs/:id', { onRequest: requireRole(tokens, 'viewer') }, async (request) => {
    const record = await api.getJob(request.params.id);
    if (record === undefined) throw notFound(`no job ${request.params.id}`);
    const answer = toJobAnswer(record);
    const waitingFor = api.waitingFor?.(record);
    if (waitingFor !== undefined) answer.waiting_for = waitingFor;
    return answer;
  });

  app.post<{ Params: JobParams }>(
    '/v1/jobs/:id/cancel',
    { onRequest: requireRole(tokens, 'operator') },
    async (request, reply) => {
      const record = await api.cancelJob(request.params.id);
      if (record === undefined) throw notFound(`no job ${request.params.id}`);
      return reply.code(202).send({ job_id: record.job_id, state: record.state });
    },
  );
}

export const REDACTED = '***';

function toAttemptAnswer(a: AttemptRecord): AttemptAnswer {
  const answer: AttemptAnswer = { attempt: a.attempt, node_id: a.node_id, assigned_at: a.assigned_at };
  if (a.accepted_at !== undefined) answer.accepted_at = a.accepted_at;
  if (a.ended_at !== undefined) answer.ended_at = a.ended_at;
  if (a.outcome !== undefined) answer.outcome = a.outcome;
  if (a.reason !== undefined) answer.reason = a.reason;
  return answer;
}

/** Field by field, so nothing new in the record leaves the plane by accident, and secrets never do. */
export function toJobAnswer(record: JobRecord): JobAnswer {
  const answer: JobAnswer = {
    job_id: record.job_id,
    state: record.state,
    attempt: record.attempt,
    priority: record.priority,
    job: record.job,
    execution_context: {
      ...record.execution_context,
      secrets: Object.fromEntries(Object.keys(record.execution_context.secrets).map((name) => [name, REDACTED])),
    },
  };
  answer.selector = record.selector;
  answer.max_attempts = record.max_attempts;
  answer.created_at = record.created_at;
  if (record.assigned_at !== undefined) answer.assigned_at = record.assigned_at;
  if (record.started_at !== undefined) answer.started_at = record.started_at;
  if (record.node_id !== undefined) answer.node_id = record.node_id;
  if (record.result !== undefined) answer.result = record.result;
  if (record.metrics !== undefined) answer.metrics = record.metrics;
  if (record.reason !== undefined) answer.reason = record.reason;
  return answer;
}
