// `muster job submit | get | logs | cancel`: jobs through the admin HTTP API.
import { Command, Option } from 'commander';
import type { Priority } from '../protocol/messages.js';
import type { JobAnswer } from '../supervisor/admin/wire-types.js';
import type { JobSelector, LogRecord } from '../supervisor/admin/wire-types.js';
import { parseTtl } from '../supervisor/tokens/ttl.js';
import { createApiClient, withClientOptions, type ApiClient, type ClientOptions, type FollowEnd } from './api-client.js';
import { listCommand, retryCommand, submitFile } from './job-pipeline-commands.js';
import { collectKeyValue } from './options.js';

interface SubmitOptions extends ClientOptions {
  priority?: Priority;
  selector?: Record<string, string>;
  timeout?: string;
  env?: Record<string, string>;
  name?: string;
  wait?: boolean;
  file?: string;
}

interface LogsOptions extends ClientOptions {
  follow?: boolean;
  json?: boolean;
}

/** Job states after which there is nothing to cancel. */
const ENDED: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered']);

export function jobCommand(): Command {
  const job = new Command('job').description('submit, inspect and cancel jobs').enablePositionalOptions();
  job.addCommand(submitCommand());
  job.addCommand(listCommand());
  job.addCommand(retryCommand());
  job.addCommand(
    withClientOptions(new Command('get'))
      .description('print a job as JSON')
      .argument('<job-id>')
      .action(async (jobId: string, options: ClientOptions) => {
        const client = await createApiClient(options);
        process.stdout.write(`${JSON.stringify(await getJob(client, jobId), null, 2)}\n`);
      }),
  );
  job.addCommand(
    withClientOptions(new Command('logs'))
      .description("print a job's output (stdout and stderr to their own streams)")
      .argument('<job-id>')
      .option('-f, --follow', 'keep printing until the job ends')
      .option('--json', 'print the chunks as JSON instead')
      .action(async (jobId: string, options: LogsOptions) => printLogs(jobId, options)),
  );
  job.addCommand(
    withClientOptions(new Command('cancel'))
      .description('cancel a job')
      .argument('<job-id>')
      .action(async (jobId: string, options: ClientOptions) => {
        const client = await createApiClient(options);
        const before = await getJob(client, jobId);
        if (ENDED.has(before.state)) {
          throw new Error(`job ${jobId} already ended ${before.state}${before.reason === undefined ? '' : ` (${before.reason})`}: nothing to cancel`);
        }
        const answer = await client.post<{ state?: string }>(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
        process.stdout.write(`cancel requested for job ${jobId}${answer?.state ? ` (now ${answer.state})` : ''}\n`);
      }),
  );
  return job;
}

function submitCommand(): Command {
  const command = new Command('submit')
    .description('submit a job: muster job submit [options] -- CMD ARGS...; or a batch: muster job submit --file jobs.json')
    .argument('[command...]', 'the command and its arguments')
    .addOption(new Option('--priority <priority>', 'default Normal').choices(['Low', 'Normal', 'High', 'Critical']))
    .option('--selector <key=value>', 'runner_type=, job_type=, or any other key as a node tag (repeatable)', collectKeyValue)
    .option('--timeout <duration>', 'e.g. 90s, 10m, 2h (default: the plane\'s)')
    .option('--env <KEY=VALUE>', 'environment variable for the job (repeatable)', collectKeyValue)
    .option('--name <name>', 'job name (default: the command line)')
    .option('--wait', "stream the job's output and exit with its exit code")
    .option('--file <jobs.json>', 'submit every job in the file ({"jobs": [...]}) as one batch: all stored or none');
  return (
    withClientOptions(command)
      // Everything after the command belongs to it: `muster job submit ls -la` works without `--`.
      .passThroughOptions()
      .action(async (argv: string[], options: SubmitOptions) => {
        if ((options.file === undefined) === (argv.length === 0)) throw new Error('give either a command or --file, not both');
        return options.file === undefined ? submit(argv, options) : submitFile(options.file, options);
      })
  );
}

async function submit(command: string[], options: SubmitOptions): Promise<void> {
  const body = {
    job: {
      command,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.env === undefined ? {} : { environment: options.env }),
      ...(options.timeout === undefined ? {} : { timeout: { secs: parseTtl(options.timeout), nanos: 0 } }),
    },
    ...(options.priority === undefined ? {} : { priority: options.priority }),
    selector: toSelector(options.selector ?? {}),
  };
  const client = await createApiClient(options);
  const { job_id: jobId } = await client.post<{ job_id: string }>('/v1/jobs', body);
  if (options.wait !== true) {
    process.stdout.write(`${jobId}\n`);
    return;
  }
  const end = await client.followLogs(jobId, writeChunk);
  process.exitCode = exitCodeOf(jobId, await getJob(client, jobId), end);
}

/** `runner_type` and `job_type` are selector fields; every other key is a tag. */
function toSelector(pairs: Record<string, string>): JobSelector {
  const selector: JobSelector = {};
  for (const [key, value] of Object.entries(pairs)) {
    if (key === 'runner_type') selector.runner_type = value;
    else if (key === 'job_type') selector.job_type = value;
    else selector.tags = { ...selector.tags, [key]: value };
  }
  return selector;
}

/** The job's own exit code; 1 with a line on stderr when it ended without one. */
function exitCodeOf(jobId: string, job: JobAnswer, end: FollowEnd): number {
  const code = job.result?.exit_code;
  const validCode = typeof code === 'number' && Number.isInteger(code) && code >= 0 && code <= 255;
  // A job that failed but says 0 must not look like a success to a script.
  if (validCode && (code !== 0 || job.state === 'Completed')) return code;
  const reason = job.reason ?? end.reason;
  process.stderr.write(`muster: job ${jobId} ended ${job.state}${reason === undefined ? '' : `: ${reason}`}\n`);
  return 1;
}

async function printLogs(jobId: string, options: LogsOptions): Promise<void> {
  const client = await createApiClient(options);
  const show = options.json === true ? (c: LogRecord) => process.stdout.write(`${JSON.stringify(c)}\n`) : writeChunk;
  if (options.follow === true) {
    await client.followLogs(jobId, show);
    return;
  }
  const chunks = await client.get<LogRecord[]>(`/v1/jobs/${encodeURIComponent(jobId)}/logs`);
  for (const chunk of chunks) show(chunk);
}

function writeChunk(chunk: LogRecord): void {
  (chunk.stream === 'stderr' ? process.stderr : process.stdout).write(chunk.data);
}

async function getJob(client: ApiClient, jobId: string): Promise<JobAnswer> {
  return client.get<JobAnswer>(`/v1/jobs/${encodeURIComponent(jobId)}`);
}
