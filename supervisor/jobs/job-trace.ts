// The plane's spans of one job's trace (observability/spans.ts makes them): `job submit` under
// the request that submitted it, whose context the store keeps with the job (`traceparent`);
// then, under that, `job queued` (from submission to the first assignment) and, for every
// attempt, `send JobAssignment`, whose context the assignment carries to the node. The node's
// answers are `process <type>` spans under the context each of its messages carries.
// While tracing is off each of these is a flag check and nothing else.
import type { NewJob, JobRecord } from '../store/job-store.js';
import { MESSAGING, messageSpanOptions, MUSTER, SpanKind, startSpan, tracingOn, traceparentOf, type Span } from '../../observability/spans.js';

/**
 * Starts a `job submit` span per job (children of the active request span) and gives each job
 * its context; `done` names each span's job and ends them.
 */
export function submitSpans<T extends NewJob>(jobs: readonly T[]): { jobs: T[]; done(records: readonly JobRecord[]): void } {
  if (!tracingOn()) return { jobs: [...jobs], done: () => undefined };
  const spans = jobs.map((job) => startSpan('job submit', { kind: SpanKind.INTERNAL, attributes: { [MUSTER.priority]: job.priority } }));
  const traced = jobs.map((job, i) => {
    const traceparent = traceparentOf(spans[i]);
    return traceparent === undefined ? job : { ...job, traceparent };
  });
  return {
    jobs: traced,
    done: (records) => {
      records.forEach((record, i) => spans[i]?.setAttribute(MUSTER.jobId, record.job_id));
      for (const span of spans) span.end();
    },
  };
}

/** What the assignment of an attempt records: the queueing before it (first attempt) and its send. */
export function assignmentSpan(job: JobRecord, nodeId: string): { span: Span; traceparent: string | undefined } | undefined {
  if (!tracingOn() || job.traceparent === undefined) return undefined;
  const attributes = { [MUSTER.jobId]: job.job_id, [MUSTER.attempt]: job.attempt, [MUSTER.priority]: job.priority };
  if (job.attempt === 1) {
    // From its submission to now, on whichever replica submitted it.
    startSpan('job queued', { kind: SpanKind.INTERNAL, attributes, startTime: Date.parse(job.created_at) }, job.traceparent).end();
  }
  const span = startSpan('send JobAssignment', messageSpanOptions('send', 'JobAssignment', { ...attributes, [MUSTER.nodeId]: nodeId }), job.traceparent);
  return { span, traceparent: traceparentOf(span) };
}

/** The attributes of a job message from a node: its job, attempt, node and message id. */
export function jobMessageAttributes(data: { job_id: string; attempt: number }, nodeId: string, messageId: string | undefined): Record<string, string | number> {
  const attributes: Record<string, string | number> = { [MUSTER.jobId]: data.job_id, [MUSTER.attempt]: data.attempt, [MUSTER.nodeId]: nodeId };
  if (messageId !== undefined) attributes[MESSAGING.messageId] = messageId;
  return attributes;
}
