// `npm start` as a user runs it, and SIGTERM to npm's pid (what a process manager sends). npm
// forwards the signal to the shell that runs the script; without `exec` in the script that shell
// died and left `node ./bin/muster serve` running as an orphan.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

let dataDir: string | undefined;
let planePid: number | undefined;

afterEach(() => {
  if (planePid !== undefined && isRunning(planePid)) process.kill(planePid, 'SIGKILL');
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

/** Alive and not a zombie waiting to be reaped. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

it('SIGTERM to the npm start process stops the plane', async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'muster-npm-start-'));
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_') && !k.startsWith('npm_')));
  const npm = spawn('npm', ['start'], {
    cwd: ROOT,
    env: {
      ...clean,
      MUSTER_DATA_DIR: dataDir,
      MUSTER_TCP: '127.0.0.1:0',
      MUSTER_UNIX: 'off',
      MUSTER_WS: 'off',
      MUSTER_GRPC: 'off',
      MUSTER_HTTP: '127.0.0.1:0',
      MUSTER_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  // The plane's stdout is this pipe (through npm): it ends only when every process holding it has.
  let out = '';
  const ended = new Promise<void>((resolve) => npm.stdout.on('close', resolve));
  const ready = new Promise<number>((resolve) => {
    npm.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = out.split('\n').find((l) => l.includes('"control plane ready"'));
      if (line !== undefined) resolve((JSON.parse(line) as { pid: number }).pid);
    });
  });
  planePid = await ready;
  expect(planePid).not.toBe(npm.pid);
  expect(isRunning(planePid)).toBe(true);

  npm.kill('SIGTERM');
  await ended;
  expect(out).toContain('"control plane stopped"');
  expect(isRunning(planePid)).toBe(false);
});
