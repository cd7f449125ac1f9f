// `muster job submit --wait`: the job's output on stdout and stderr as it comes, what the job
// waits for on stderr as it changes (on a terminal), through a plane restart (the follow and
// the status resume within the reconnect window), one attempt's output at a time (a new
// attempt is announced: attempt-output.ts), and the job's own exit code at the end.
// Ctrl-C stops waiting and says how to cancel the job, or cancels it (`--cancel-on-interrupt`).
import { setTimeout as delay } from 'node:timers/promises';
import type { JobAnswer, LogRecord } from '../supervisor/admin/wire-types.js';
import { TERMINAL_STATES } from '../supervisor/store/job-store.js';
import type { ApiClient, FollowEnd } from './api-client.js';
import { AttemptOutput } from './attempt-output.js';
import { describeJob, NodeNames } from './job-status.js';

/** How often the job's state is asked while waiting, for the status line. */
const STATUS_POLL_MS = 1_000;
/** The exit status of a command stopped by SIGINT, as shells report it. */
const INTERRUPTED = 130;

export interface WaitOptions {
  /** Print what the job waits for, as it changes, on stderr. */
  status: boolean;
  /** How often the job's state is asked for the status line; default 1 s. */
  statusEveryMs?: number;
  /** Ctrl-C cancels the job rather than leaving it running. */
  cancelOnInterrupt: boolean;
  writeChunk: (chunk: LogRecord) => void;
}

/** Waits for the job to end; resolves to the exit status the command should have. */
export async function waitForJob(client: ApiClient, jobId: string, options: WaitOptions): Promise<number> {
  const stopStatus = new AbortController();
  const onInterrupt = (): void => void interrupted(client, jobId, options.cancelOnInterrupt);
  process.once('SIGINT', onInterrupt);
  try {
    const status = options.status ? watchStatus(client, jobId, stopStatus.signal, options.statusEveryMs ?? STATUS_POLL_MS) : Promise.resolve();
    const output = new AttemptOutput(client, jobId, new NodeNames(client), options.writeChunk);
    const end = await client.followLogs(jobId, (chunk) => output.show(chunk));
    stopStatus.abort();
    await status;
    const job = await client.retrying(() => client.get<JobAnswer>(`/v1/jobs/${encodeURIComponent(jobId)}`));
    return exitCodeOf(jobId, job, end);
  } finally {
    stopStatus.abort();
    process.off('SIGINT', onInterrupt);
  }
}

/** Prints a status line each time it changes, until `stop`; errors only skip a round. */
async function watchStatus(client: ApiClient, jobId: string, stop: AbortSignal, everyMs: number): Promise<void> {
  const names = new NodeNames(client);
  let last: string | undefined;
  while (!stop.aborted) {
    try {
      const job = await client.get<JobAnswer>(`/v1/jobs/${encodeURIComponent(jobId)}`);
      const line = await describeJob(job, names);
      if (line !== last && !stop.aborted && !TERMINAL_STATES.has(job.state)) process.stderr.write(`muster: ${line}\n`);
      last = line;
    } catch {
      // The plane is away: the follow says so and reconnects; the next round asks again.
    }
    // timers/promises removes its abort listener when the timer fires: a listener added per round
    // and left on the signal made Node warn of a leak on stderr after eleven rounds.
    await delay(everyMs, undefined, { signal: stop }).catch(() => undefined);
  }
}

async function interrupted(client: ApiClient, jobId: string, cancel: boolean): Promise<void> {
  let text: string;
  if (cancel) {
    try {
      const answer = await client.post<{ state?: string }>(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
      text = `muster: interrupted; cancel requested for job ${jobId}${answer?.state === undefined ? '' : ` (now ${answer.state})`}\n`;
    } catch (err) {
      text = `muster: interrupted; could not cancel job ${jobId}: ${err instanceof Error ? err.message : String(err)}\n`;
    }
  } else {
    text = `muster: stopped waiting; job ${jobId} goes on. Cancel it with: muster job cancel ${jobId}\n`;
  }
  process.stderr.write(text, () => process.exit(INTERRUPTED));
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
