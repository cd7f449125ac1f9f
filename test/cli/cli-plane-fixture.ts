// One real plane (`muster serve`, a child process) per test file, and `bin/muster` CLI processes
// against it, for the CLI tests that need a running plane (cli-plane*.test.ts): each file gets
// its own plane and harness, started before its tests and stopped after.
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll } from 'vitest';
import { Harness, runMuster, waitFor, type PlaneProcess } from '../e2e/harness.js';
import { MUSTER_BIN } from '../muster-process.js';

export const WAIT_MS = 30_000;

/** A CLI process whose stdout and stderr are kept apart, to be waited on. */
export class Cli {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Waits until stderr matches; returns the match. */
  stderrMatch(pattern: RegExp, what: string): Promise<RegExpMatchArray> {
    return waitFor(() => this.stderr.match(pattern) ?? undefined, WAIT_MS, `${what}; stderr so far: ${this.stderr}`);
  }

  stdoutHas(text: string): Promise<true> {
    return waitFor(() => this.stdout.includes(text), WAIT_MS, `stdout to show ${JSON.stringify(text)}; so far: ${this.stdout}`);
  }
}

export interface CliPlane {
  readonly harness: Harness;
  /** The file's plane (started in `beforeAll`). */
  readonly plane: PlaneProcess;
  /** A CLI process against the plane, killed after the file. */
  cli(args: string[]): Cli;
  /** A CLI run to its end against the plane. */
  muster(args: string[]): ReturnType<typeof runMuster>;
  /** The plane to talk to, as variables: options after a job's command would be the command's. */
  where(): Record<string, string>;
  /** The plane was restarted (a new process): talk to it from now on. */
  restarted(plane: PlaneProcess): void;
}

export function cliPlane(): CliPlane {
  const harness = new Harness();
  const clis: Cli[] = [];
  let plane: PlaneProcess | undefined;
  const started = (): PlaneProcess => {
    if (plane === undefined) throw new Error('the plane starts in beforeAll');
    return plane;
  };
  const where = (): Record<string, string> => ({ MUSTER_API: started().httpUrl, MUSTER_DATA_DIR: started().dataDir });
  beforeAll(async () => {
    plane = await harness.startPlane();
  }, 60_000);
  afterAll(async () => {
    for (const c of clis) c.child.kill('SIGKILL');
    await harness.close();
  }, 60_000);
  return {
    harness,
    get plane() {
      return started();
    },
    cli(args) {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
      const c = new Cli(spawn(MUSTER_BIN, args, { cwd: tmpdir(), env: { ...clean, ...where() }, stdio: ['ignore', 'pipe', 'pipe'] }));
      clis.push(c);
      return c;
    },
    muster: (args) => runMuster(args, where()),
    where,
    restarted(next) {
      plane = next;
    },
  };
}
