// The real `bin/muster` (through tsx, as a user runs it), where every other test runs the copy
// compiled for the test run (test/muster-process.ts): the script itself starts from any working
// directory, and the compiled copy is the same command as far as its help and version show.
// (`npm start` runs the real script too: npm-start.test.ts.)
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { MUSTER_BIN, REAL_BIN } from '../muster-process.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  return new Promise((resolve) => {
    execFile(file, args, { cwd: tmpdir(), env: clean, timeout: 25_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

describe('bin/muster', () => {
  it('runs from another working directory and prints the package version', async () => {
    expect(await run(REAL_BIN, ['--version'])).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: '' });
  });

  it('prints the same help and errors as the copy the other tests run', async () => {
    for (const args of [['--help'], ['job', 'submit', '--help'], ['no-such-command']]) {
      const [real, compiled] = await Promise.all([run(REAL_BIN, args), run(MUSTER_BIN, args)]);
      expect(real.stdout.length + real.stderr.length).toBeGreaterThan(0);
      expect(compiled, args.join(' ')).toEqual(real);
    }
  });
});
