// `muster job get`: a job as an operator reads it (state, attempt, node, times, exit code,
// what it waits for, the last lines of its output) rather than its JSON, which `--json` prints.
import type { AttemptAnswer, JobAnswer, LogRecord } from '../supervisor/admin/wire-types.js';
import { describeSelector, describeWaitingFor, type NodeNames } from './job-status.js';
import { terminalText } from './terminal-text.js';

/** Lines of output shown at the end of the summary. */
export const SUMMARY_TAIL_LINES = 10;

/**
 * The summary as text; `logs` are the job's chunks (the current attempt's are shown); `attempts`,
 * when the job had more than one, are listed with how each ended.
 */
export async function jobSummary(job: JobAnswer, logs: LogRecord[], names: NodeNames, now: Date, attempts: AttemptAnswer[] = []): Promise<string> {
  const rows: Array<[string, string]> = [];
  // The name defaults to the command line: shown only when it says something else.
  const named = job.job.name !== '' && job.job.name !== job.job.command.join(' ');
  rows.push(['job', named ? `${job.job_id} (${job.job.name})` : job.job_id]);
  rows.push(['state', job.reason === undefined ? job.state : `${job.state}: ${job.reason}`]);
  rows.push(['attempt', job.max_attempts === undefined ? String(job.attempt) : `${job.attempt} of ${job.max_attempts}`]);
  const waiting = job.state === 'Queued' ? describeWaitingFor(job) : undefined;
  if (waiting !== undefined) rows.push(['waiting for', waiting]);
  if (job.node_id !== undefined) {
    const host = await names.hostname(job.node_id);
    rows.push(['node', host === undefined ? job.node_id : `${job.node_id} (${host})`]);
  }
  rows.push(['command', job.job.command.map(quoteArg).join(' ')]);
  rows.push(['priority', job.priority]);
  const selector = describeSelector(job.selector);
  if (selector !== '') rows.push(['selector', selector]);
  for (const [label, at] of [
    ['submitted', job.created_at],
    ['assigned', job.assigned_at],
    ['started', job.started_at ?? job.result?.started_at],
    ['ended', job.result?.completed_at],
  ] as const) {
    if (at !== undefined) rows.push([label, `${at} (${ago(at, now)})`]);
  }
  if (job.result !== undefined) rows.push(['exit code', job.result.exit_code === null ? 'none' : String(job.result.exit_code)]);
  if (job.metrics !== undefined) rows.push(['duration', `${(job.metrics.duration_ms / 1000).toFixed(1)}s`]);
  const width = Math.max(...rows.map(([label]) => label.length));
  let text = rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n') + '\n';
  if (attempts.length > 1) {
    text += '\nattempts:\n';
    for (const a of attempts) {
      const host = await names.hostname(a.node_id);
      const node = host === undefined ? a.node_id : `${a.node_id} (${host})`;
      const ended = a.outcome === undefined ? 'not ended' : a.reason === undefined ? a.outcome : `${a.outcome}: ${a.reason}`;
      // A reason comes from the node (JobRejected): escaped, so that it cannot act on the terminal.
      text += `  ${String(a.attempt).padStart(3)}  ${terminalText(node)}  ${terminalText(ended)}\n`;
    }
  }
  const tail = outputTail(job, logs);
  if (tail.lines.length > 0) {
    text += `\nlast ${tail.lines.length} line${tail.lines.length === 1 ? '' : 's'} of output (muster job logs ${job.job_id}):\n`;
    text += tail.lines.map((line) => `  ${line}`).join('\n') + '\n';
  }
  return text;
}

/** The current attempt's last lines, stdout and stderr in the order they were stored. */
function outputTail(job: JobAnswer, logs: LogRecord[]): { lines: string[] } {
  const chunks = logs.filter((c) => c.attempt === job.attempt);
  let text = chunks.map((c) => c.data).join('');
  // No chunks (a node that sends only its result): the result's own output.
  if (text === '' && job.result !== undefined) text = job.result.stdout + job.result.stderr;
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return { lines: lines.slice(-SUMMARY_TAIL_LINES) };
}

function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function ago(iso: string, now: Date): string {
  const seconds = Math.round((now.getTime() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return 'unknown';
  if (seconds < 120) return `${Math.max(0, seconds)}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86_400)}d ago`;
}
