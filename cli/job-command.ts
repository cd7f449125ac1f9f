// `muster job submit | get | logs | cancel`: jobs through the admin HTTP API.
import { Command, Option } from 'commander';
import type { Priority } from '../protocol/messages.js';
import type { JobAnswer } from '../supervisor/admin/wire-types.js';
import type { AttemptAnswer, JobSelector, LogRecord } from '../supervisor/admin/wire-types.js';
import { parseTtl } from '../supervisor/tokens/ttl.js';
import {
  createApiClient,
  DEFAULT_RECONNECT_WINDOW,
  withClientOptions,
  type ApiClient,
  type ApiClientOptions,
  type ClientOptions,
} from './api-client.js';
import { AttemptOutput } from './attempt-output.js';
import { listCommand, retryCommand, submitFile } from './job-pipeline-commands.js';
import { artifactsCommand } from './artifacts-command.js';
import { jobSummary } from './job-summary.js';
import { NodeNames } from './job-status.js';
import { waitForJob } from './job-wait.js';
import { collect, collectKeyValue } from './options.js';

interface SubmitOptions extends ClientOptions {
  priority?: Priority;
  selector?: Record<string, string>;
  timeout?: string;
  env?: Record<string, string>;
  artifact?: string[];
  name?: string;
  wait?: boolean;
  file?: string;
  status?: boolean;
  cancelOnInterrupt?: boolean;
  reconnectWindow: string;
}

interface LogsOptions extends ClientOptions {
  follow?: boolean;
  json?: boolean;
  reconnectWindow: string;
}

/** Job states after which there is nothing to cancel. */
const ENDED: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered']);

interface GetOptions extends ClientOptions {
  json?: boolean;
}

const RECONNECT_HELP = 'how long to keep reconnecting to a plane that went away (a restart), e.g. 30s, 5m; 0: not at all';

export function jobCommand(): Command {
  const job = new Command('job').description('submit, inspect and cancel jobs').enablePositionalOptions();
  job.addCommand(submitCommand());
  job.addCommand(listCommand());
  job.addCommand(retryCommand());
  job.addCommand(artifactsCommand());
  job.addCommand(
    withClientOptions(new Command('get'))
      .description('print a summary of a job: state, attempt, node, times, exit code, last lines of output')
      .argument('<job-id>')
      .option('--json', "print the API's JSON answer instead (for scripts)")
      .action(async (jobId: string, options: GetOptions) => printJob(jobId, options)),
  );
  job.addCommand(
    withClientOptions(new Command('logs'))
      .description("print a job's output (stdout and stderr to their own streams)")
      .argument('<job-id>')
      .option('-f, --follow', 'print what the job wrote so far, then keep printing until it ends')
      .option('--json', 'print the chunks as JSON instead')
      .option('--reconnect-window <duration>', RECONNECT_HELP, DEFAULT_RECONNECT_WINDOW)
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
    .option('--artifact <glob>', "a file or glob, relative to the job's directory, uploaded when it ends, e.g. 'dist/*.tar.gz' (repeatable)", collect)
    .option('--wait', "stream the job's output and exit with its exit code")
    .option('--status', 'with --wait: say on stderr what the job waits for (default: when stdout is a terminal)')
    .option('--no-status', 'with --wait: no status lines, only the job id')
    .option('--cancel-on-interrupt', 'with --wait: Ctrl-C cancels the job (default: it goes on)')
    .option('--reconnect-window <duration>', `with --wait: ${RECONNECT_HELP}`, DEFAULT_RECONNECT_WINDOW)
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
      ...(options.artifact === undefined ? {} : { artifacts: options.artifact.map((path) => ({ path })) }),
    },
    ...(options.priority === undefined ? {} : { priority: options.priority }),
    selector: toSelector(options.selector ?? {}),
  };
  const client = await createApiClient(options, reconnecting(options.reconnectWindow, options.api));
  const { job_id: jobId } = await client.post<{ job_id: string }>('/v1/jobs', body);
  if (options.wait !== true) {
    process.stdout.write(`${jobId}\n`);
    return;
  }
  // At once, whatever else is printed: the one handle on the job if this command is stopped.
  process.stderr.write(`job ${jobId}\n`);
  process.exitCode = await waitForJob(client, jobId, {
    status: options.status ?? process.stdout.isTTY === true,
    cancelOnInterrupt: options.cancelOnInterrupt === true,
    writeChunk,
  });
}

/** Client options for a command that waits: reconnect within the window, saying so on stderr. */
function reconnecting(window: string, api: string): ApiClientOptions {
  let windowMs = 0;
  try {
    if (!/^0+[smhd]?$/i.test(window.trim())) windowMs = parseTtl(window) * 1000;
  } catch {
    throw new Error(`invalid --reconnect-window "${window}": expected a duration such as 30s or 5m, or 0`);
  }
  return {
    reconnectWindowMs: windowMs,
    onConnection: (notice) =>
      process.stderr.write(
        notice.kind === 'lost'
          ? `muster: lost the control plane (${notice.detail ?? 'no answer'}); reconnecting for up to ${window}\n`
          : `muster: reconnected to the control plane at ${api}; resuming\n`,
      ),
  };
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

async function printJob(jobId: string, options: GetOptions): Promise<void> {
  const client = await createApiClient(options);
  const job = await getJob(client, jobId);
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
    return;
  }
  const logs = await client.get<LogRecord[]>(`/v1/jobs/${encodeURIComponent(jobId)}/logs`);
  // Each earlier attempt and why it ended: what a dead-lettered job's operator needs first.
  const attempts = job.attempt > 1 ? await client.get<AttemptAnswer[]>(`/v1/jobs/${encodeURIComponent(jobId)}/attempts`) : [];
  process.stdout.write(await jobSummary(job, logs, new NodeNames(client), new Date(), attempts));
}

async function printLogs(jobId: string, options: LogsOptions): Promise<void> {
  const client = await createApiClient(options, options.follow === true ? reconnecting(options.reconnectWindow, options.api) : {});
  const show = options.json === true ? (c: LogRecord) => process.stdout.write(`${JSON.stringify(c)}\n`) : writeChunk;
  if (options.follow === true) {
    // As JSON every chunk, with its attempt; as text one attempt's output at a time.
    const output = new AttemptOutput(client, jobId, new NodeNames(client), show);
    await client.followLogs(jobId, options.json === true ? show : (chunk) => output.show(chunk));
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
