// The body of `POST /v1/jobs` (PROTOCOL.md section 7): its TypeBox schema, and the complete
// NewJob made from it with every default filled in. Unknown fields are ignored, as on the wire,
// and never copied into the stored job.
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MusterError } from '../../protocol/errors.js';
import { Duration, ExecutionContext, Priority, ResourceRequirements } from '../../protocol/messages.js';
import type { JobSelector, NewJob } from '../store/job-store.js';

const StringMap = Type.Record(Type.String(), Type.String());

/** RFC 3339 date-time, as in protocol/messages.ts; also checked to be a real date. */
const Timestamp = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})$',
});

export const SubmitJobRequest = Type.Object({
  job: Type.Object({
    name: Type.Optional(Type.String()),
    image: Type.Optional(Type.String()),
    command: Type.Array(Type.String(), { minItems: 1 }),
    environment: Type.Optional(StringMap),
    timeout: Type.Optional(Duration),
    resource_requirements: Type.Optional(Type.Partial(ResourceRequirements)),
  }),
  execution_context: Type.Optional(Type.Partial(ExecutionContext)),
  priority: Type.Optional(Priority),
  deadline: Type.Optional(Timestamp),
  selector: Type.Optional(
    Type.Object({
      runner_type: Type.Optional(Type.String()),
      job_type: Type.Optional(Type.String()),
      tags: Type.Optional(StringMap),
    }),
  ),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type SubmitJobRequest = Static<typeof SubmitJobRequest>;

const check = TypeCompiler.Compile(SubmitJobRequest);

/** What a submission falls back on (PlaneApi.defaults). */
export interface SubmitDefaults {
  maxAttempts: number;
  jobTimeoutMs: number;
}

/** Validates `body` and fills defaults; throws `invalid_message` with the offending `field`. */
export function toNewJob(body: unknown, defaults: SubmitDefaults): NewJob {
  if (!check.Check(body)) {
    const first = check.Errors(body).First();
    const field = first === undefined || first.path === '' ? 'body' : first.path.slice(1).replaceAll('/', '.');
    throw new MusterError('invalid_message', `${field}: ${first?.message ?? 'invalid'}`, { field });
  }
  const { job, execution_context: ctx = {} } = body;
  const newJob: NewJob = {
    job: {
      name: job.name === undefined || job.name === '' ? job.command.join(' ') : job.name,
      image: job.image ?? '',
      command: [...job.command],
      environment: { ...job.environment },
      timeout: job.timeout ?? durationOfMs(defaults.jobTimeoutMs),
      resource_requirements: {
        cpu_cores: job.resource_requirements?.cpu_cores ?? 0,
        memory_mb: job.resource_requirements?.memory_mb ?? 0,
        disk_gb: job.resource_requirements?.disk_gb ?? 0,
      },
    },
    execution_context: {
      workspace_id: ctx.workspace_id ?? '',
      pipeline_id: ctx.pipeline_id ?? '',
      build_number: ctx.build_number ?? 0,
      git_ref: ctx.git_ref ?? '',
      variables: { ...ctx.variables },
      secrets: { ...ctx.secrets },
    },
    priority: body.priority ?? 'Normal',
    selector: toSelector(body.selector),
    max_attempts: body.max_attempts ?? defaults.maxAttempts,
  };
  if (body.deadline !== undefined) newJob.deadline = normalizeDeadline(body.deadline);
  return newJob;
}

function toSelector(selector: SubmitJobRequest['selector']): JobSelector {
  const out: JobSelector = {};
  if (selector?.runner_type !== undefined) out.runner_type = selector.runner_type;
  if (selector?.job_type !== undefined) out.job_type = selector.job_type;
  if (selector?.tags !== undefined) out.tags = { ...selector.tags };
  return out;
}

/** Timestamps are stored in UTC (PROTOCOL.md section 2), whatever offset the client wrote. */
function normalizeDeadline(text: string): string {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) {
    throw new MusterError('invalid_message', 'deadline: not a valid date-time', { field: 'deadline' });
  }
  return new Date(ms).toISOString();
}

function durationOfMs(ms: number): Duration {
  const whole = Math.max(0, Math.floor(ms));
  return { secs: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}

/** Most jobs in one `POST /v1/jobs` batch (PROTOCOL.md section 7). */
export const MAX_BATCH_JOBS = 1_000;

/** True when `body` is a batch (`{jobs: [...]}`) rather than one job. */
export function isBatch(body: unknown): body is { jobs: unknown } {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && 'jobs' in body;
}

/**
 * A batch's jobs, each validated and completed as `toNewJob` does, in order. One invalid job
 * refuses the whole batch, its `field` prefixed with its index: `jobs[3].job.command`.
 */
export function toNewJobs(body: { jobs: unknown }, defaults: SubmitDefaults): NewJob[] {
  const { jobs } = body;
  if (!Array.isArray(jobs) || jobs.length < 1 || jobs.length > MAX_BATCH_JOBS) {
    throw new MusterError('invalid_message', `jobs: must be an array of 1 to ${MAX_BATCH_JOBS} jobs`, { field: 'jobs' });
  }
  return jobs.map((job: unknown, i) => {
    try {
      return toNewJob(job, defaults);
    } catch (err) {
      if (!(err instanceof MusterError) || err.code !== 'invalid_message') throw err;
      const inner = err.field === undefined || err.field === 'body' ? '' : `.${err.field}`;
      const field = `jobs[${i}]${inner}`;
      const detail = err.field !== undefined && err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
      throw new MusterError('invalid_message', `${field}: ${detail}`, { field });
    }
  });
}
