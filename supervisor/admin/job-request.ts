// The body of `POST /v1/jobs` (PROTOCOL.md section 7): its TypeBox schema, and the complete
// NewJob made from it with every default filled in. Unknown fields are ignored, as on the wire,
// and never copied into the stored job.
import { Type, type Static, type TNumber, type TObject, type TProperties } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MusterError } from '../../protocol/errors.js';
import { Duration, ExecutionContext, JobSpec, Name, NAME_MAX, PATH_MAX, Priority, TagMap } from '../../protocol/messages.js';
import { parseDateTime } from '../../protocol/timestamp.js';
import type { JobSelector, NewJob } from '../store/job-store.js';
import { assignmentOverLimit, type AssignedJob } from './assignment-size.js';

/**
 * Ceilings on what a job may ask for (issue 8 item 10): above them a number is a mistake or an
 * attack, and an impossible request would sit `Queued` forever or overflow a timer.
 */
export const JOB_LIMITS = {
  /** A week: longer than any CI job, and within setTimeout's 24.8 days, so the run timer fires on time. */
  timeoutSecs: 7 * 24 * 3600,
  maxAttempts: 100,
  /** The largest machines have a few hundred cores. */
  cpuCores: 1024,
  /** 64 TiB of memory and 1 PiB of disk. */
  memoryMb: 64 * 1024 * 1024,
  diskGb: 1024 * 1024,
};

/** Room for fields of a newer API version beside the known ones, as on the wire. */
const SPARE_FIELDS = 32;

function Obj<P extends TProperties>(properties: P): TObject<P> {
  return Type.Object(properties, { maxProperties: Object.keys(properties).length + SPARE_FIELDS });
}

const Amount = (maximum: number): TNumber => Type.Number({ minimum: 0, maximum });

export const SubmitJobRequest = Obj({
  job: Obj({
    name: Type.Optional(JobSpec.properties.name),
    image: Type.Optional(JobSpec.properties.image),
    command: JobSpec.properties.command,
    environment: Type.Optional(JobSpec.properties.environment),
    timeout: Type.Optional(
      Obj({ secs: Type.Integer({ minimum: 0, maximum: JOB_LIMITS.timeoutSecs }), nanos: Duration.properties.nanos }),
    ),
    resource_requirements: Type.Optional(
      Type.Partial(Obj({ cpu_cores: Amount(JOB_LIMITS.cpuCores), memory_mb: Amount(JOB_LIMITS.memoryMb), disk_gb: Amount(JOB_LIMITS.diskGb) })),
    ),
    /** Files the node uploads when the command ends (PROTOCOL.md section 8); such a job runs only on a node with `artifacts`. */
    artifacts: JobSpec.properties.artifacts,
  }),
  execution_context: Type.Optional(Type.Partial(ExecutionContext)),
  priority: Type.Optional(Priority),
  /** RFC 3339; checked to name a real moment in normalizeDeadline. */
  deadline: Type.Optional(Type.String({ maxLength: 64 })),
  selector: Type.Optional(
    Obj({
      runner_type: Type.Optional(Name(NAME_MAX)),
      job_type: Type.Optional(Name(NAME_MAX)),
      tags: Type.Optional(TagMap),
    }),
  ),
  max_attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: JOB_LIMITS.maxAttempts })),
});
export type SubmitJobRequest = Static<typeof SubmitJobRequest>;

const check = TypeCompiler.Compile(SubmitJobRequest);

/** What a submission falls back on, and the frame limit its assignment must fit (PlaneApi.defaults). */
export interface SubmitDefaults {
  maxAttempts: number;
  jobTimeoutMs: number;
  /** `max_frame_bytes`: a job whose JobAssignment could not be sent within it is refused. */
  maxFrameBytes: number;
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
  if (job.artifacts !== undefined && job.artifacts.length > 0) newJob.job.artifacts = job.artifacts.map((a) => ({ ...a }));
  if (body.deadline !== undefined) newJob.deadline = normalizeDeadline(body.deadline);
  checkSendable(newJob, defaults.maxFrameBytes);
  return newJob;
}

/** A job is refused when the JobAssignment that carries it could not be sent in one frame. */
function checkSendable(job: NewJob, maxFrameBytes: number): void {
  const { job: spec, execution_context, priority, deadline } = job;
  const assigned: AssignedJob = { job: spec, execution_context, priority };
  if (deadline !== undefined) assigned.deadline = deadline;
  const bytes = assignmentOverLimit(assigned, maxFrameBytes);
  if (bytes !== undefined) {
    throw new MusterError(
      'invalid_message',
      `job: its JobAssignment would take up to ${bytes} bytes, over max_frame_bytes (${maxFrameBytes}); ` +
        'make the command, environment, variables or secrets smaller',
      { field: 'job' },
    );
  }
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
  const ms = parseDateTime(text);
  if (ms === undefined) {
    throw new MusterError('invalid_message', 'deadline: not a real RFC 3339 date-time (e.g. 2026-03-01T12:00:00Z)', { field: 'deadline' });
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
