// `muster job list | retry` and `muster job submit --file`: pipelines through the admin HTTP
// API (PROTOCOL.md section 7). Apart from job-command.ts, which registers them.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import type { BatchSubmitAnswer, JobAnswer, JobListAnswer, JobMoveAnswer } from '../supervisor/admin/wire-types.js';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';

const STATES = ['Queued', 'Assigned', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered'];
/** The API's largest page (`limit`). */
const MAX_PAGE = 1_000;

interface ListOptions extends ClientOptions {
  state?: string;
  node?: string;
  priority?: string;
  limit: string;
  json?: boolean;
}

export function listCommand(): Command {
  return withClientOptions(new Command('list'))
    .description('list jobs, newest first')
    .addOption(new Option('--state <state>', 'only jobs in this state').choices(STATES))
    .option('--node <node-id>', 'only jobs on this node (current or last attempt)')
    .addOption(new Option('--priority <priority>', 'only jobs of this priority').choices(['Low', 'Normal', 'High', 'Critical']))
    .option('--limit <n>', 'at most this many jobs', '100')
    .option('--json', 'print the jobs as a JSON array instead of a table')
    .action(async (options: ListOptions) => listJobs(options));
}

export function retryCommand(): Command {
  return withClientOptions(new Command('retry'))
    .description('run a job that ended Failed, TimedOut, Cancelled or DeadLettered again, as its next attempt')
    .argument('<job-id>')
    .action(async (jobId: string, options: ClientOptions) => {
      const client = await createApiClient(options);
      const answer = await client.post<JobMoveAnswer>(`/v1/jobs/${encodeURIComponent(jobId)}/retry`);
      process.stdout.write(`job ${answer.job_id} queued again as attempt ${answer.attempt}\n`);
    });
}

/**
 * `muster job submit --file jobs.json`: the file holds `{jobs: [...]}` or a bare array of jobs,
 * each as the body of `POST /v1/jobs`. Sent as one batch (stored all or none); prints the ids,
 * one a line, in the file's order.
 */
export async function submitFile(file: string, options: ClientOptions): Promise<void> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read jobs from ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const jobs = Array.isArray(parsed) ? parsed : (parsed as { jobs?: unknown } | null)?.jobs;
  if (!Array.isArray(jobs)) throw new Error(`${file} must hold {"jobs": [...]} or an array of jobs`);
  const client = await createApiClient(options);
  const { job_ids: ids } = await client.post<BatchSubmitAnswer>('/v1/jobs', { jobs });
  process.stdout.write(ids.map((id) => `${id}\n`).join(''));
}

async function listJobs(options: ListOptions): Promise<void> {
  const wanted = Number(options.limit);
  if (!Number.isInteger(wanted) || wanted < 1) throw new Error(`--limit must be a positive integer, not ${options.limit}`);
  const client = await createApiClient(options);
  const jobs: JobAnswer[] = [];
  let cursor: string | undefined;
  // Page by page until enough, or the last page.
  do {
    const query = new URLSearchParams({ limit: String(Math.min(MAX_PAGE, wanted - jobs.length)) });
    if (options.state !== undefined) query.set('state', options.state);
    if (options.node !== undefined) query.set('node_id', options.node);
    if (options.priority !== undefined) query.set('priority', options.priority);
    if (cursor !== undefined) query.set('cursor', cursor);
    const page = await client.get<JobListAnswer>(`/v1/jobs?${query.toString()}`);
    jobs.push(...page.jobs);
    cursor = page.next_cursor;
  } while (cursor !== undefined && jobs.length < wanted);
  process.stdout.write(options.json === true ? `${JSON.stringify(jobs, null, 2)}\n` : jobsTable(jobs));
}

const HEADERS = ['JOB_ID', 'STATE', 'ATTEMPT', 'PRIORITY', 'NODE', 'NAME'];

/** A plain-text table, one job a line; columns padded to their widest cell. */
export function jobsTable(jobs: JobAnswer[]): string {
  if (jobs.length === 0) return 'no jobs\n';
  const rows = jobs.map((j) => [j.job_id, j.state, String(j.attempt), j.priority, j.node_id ?? '-', j.job.name]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[HEADERS, ...rows].map(line).join('\n')}\n`;
}
