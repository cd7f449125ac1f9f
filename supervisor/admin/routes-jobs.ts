// Job routes of the admin HTTP API: submit, read, cancel (PROTOCOL.md section 7).
// Logs live in routes-logs.ts.
import type { FastifyInstance } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { notFound } from './api-errors.js';
import { toNewJob } from './job-request.js';
import type { JobRecord } from '../store/job-store.js';
import type { JobAnswer } from './wire-types.js';

interface JobParams {
  id: string;
}

export function registerJobRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { api, tokens } = deps;

  app.post('/v1/jobs', { onRequest: requireRole(tokens, 'operator') }, async (request, reply) => {
    const record = await api.submitJob(toNewJob(request.body, api.defaults));
    deps.logger.info({ job_id: record.job_id }, 'job submitted over the admin API');
    return reply.code(201).header('location', `/v1/jobs/${record.job_id}`).send({ job_id: record.job_id });
  });

  app.get<{ Params: JobParams }>('/v1/jobs/:id', { onRequest: requireRole(tokens, 'viewer') }, async (request) => {
    const record = await api.getJob(request.params.id);
    if (record === undefined) throw notFound(`no job ${request.params.id}`);
    return toJobAnswer(record);
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
