// The body of `POST /v1/jobs` (PROTOCOL.md section 7): its TypeBox schema, and the complete
// NewJob made from it with every default filled in. Unknown fields are ignored, as on the wire,
// and never copied into the stored job.
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MusterError } from '../../protocol/errors.js';
import { Duration, ExecutionContext, PATH_MAX, Priority, ResourceRequirements } from '../../protocol/messages.js';
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
      name: job.name === undefined || job.name === '' ? nameOf(job.command) : job.name,
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

/**
 * A job without a name is named after its command, made a name: control characters (a
 * script's newlines) become spaces and it is cut to the longest name (protocol/messages.ts).
 */
function nameOf(command: string[]): string {
  // eslint-disable-next-line no-control-regex -- replacing control characters is the point
  const name = command.join(' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  return name.length > PATH_MAX ? `${name.slice(0, PATH_MAX - 1)}…` : name;
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
