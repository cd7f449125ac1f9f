// The `muster` command: builds the commander program from one file per command group and runs
// it. Every failure ends as one line on stderr (`muster: <message>`) and exit status 1, or the
// error's own `exitStatus` (65: `muster serve` found its store damaged or read-only). A client
// command whose reader stops reading (`| head`) ends quietly with 0.
import { packageVersion } from '../supervisor/package-version.js';
import { Command } from 'commander';
import { agentCommand } from './agent-command.js';
import { clusterCommand } from './cluster-command.js';
import { completionCommand } from './completion-command.js';
import { drainCommand, undrainCommand } from './drain-command.js';
import { jobCommand } from './job-command.js';
import { nodeCommand } from './node-command.js';
import { nodesCommand } from './nodes-command.js';
import { serveCommand } from './serve-command.js';
import { statsCommand } from './stats-command.js';
import { terminalText } from './terminal-text.js';
import { tokenCommand } from './token-command.js';
import { uiCommand } from './ui-command.js';

export function buildProgram(): Command {
  const program = new Command('muster')
    .description('control plane for fleets of CI runner nodes')
    .version(packageVersion(), '-V, --version')
    // Lets `job submit` pass the job's own options through untouched.
    .enablePositionalOptions();
  for (const command of [serveCommand(), agentCommand(), tokenCommand(), jobCommand(), nodesCommand(), statsCommand(), nodeCommand(), clusterCommand(), drainCommand(), undrainCommand(), uiCommand(), completionCommand()]) {
    program.addCommand(command);
  }
  // addCommand does not pass settings down, so set the error format on every command.
  forEachCommand(program, (command) =>
    command.configureOutput({ outputError: (text, write) => write(`muster: ${text.replace(/^error: /, '')}`) }),
  );
  return program;
}

/** Runs the program on `argv` (as `process.argv`); sets the exit status instead of throwing. */
export async function main(argv: readonly string[]): Promise<void> {
  endQuietlyWhenOutputCloses(argv[2]);
  try {
    await buildProgram().parseAsync([...argv]);
  } catch (err) {
    // The message may come from the network (an API error answer): escaped, like every such text.
    process.stderr.write(`muster: ${terminalText(oneLine(err))}\n`);
    const status = (err as { exitStatus?: unknown } | undefined)?.exitStatus;
    process.exitCode = typeof status === 'number' ? status : 1;
  }
}

/**
 * A reader that stops reading (`muster job logs ID | head`) ends a client command quietly with
 * status 0, as it ends `cat`: Node ignores SIGPIPE, so the write fails with EPIPE, which unheard
 * crashed the command with a stack trace. Not `serve` or `agent`: their output is their log
 * (pino writes it, not process.stdout), and a closed log must not stop a plane or a runner.
 */
function endQuietlyWhenOutputCloses(command: string | undefined): void {
  if (command === 'serve' || command === 'agent') return;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

function forEachCommand(command: Command, fn: (command: Command) => void): void {
  fn(command);
  for (const sub of command.commands) forEachCommand(sub, fn);
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n', 1)[0] ?? 'error';
}

