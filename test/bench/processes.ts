// Starts what the benchmarks measure as separate processes: a real control plane
// (`muster serve`) and the raw echo baseline, and stops them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface RunningPlane {
  tcpUrl: URL;
  httpUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

export async function startPlane(env: Record<string, string> = {}): Promise<RunningPlane> {
  const dataDir = mkdtempSync(join(tmpdir(), 'muster-bench-'));
  // BENCH_PLANE_NODE_ARGS adds Node flags to the plane (e.g. --cpu-prof), which NODE_OPTIONS refuses.
  const nodeArgs = (process.env.BENCH_PLANE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const child = spawn(
    process.execPath,
    [...nodeArgs, join(root, 'bin/muster'), 'serve', '--data-dir', dataDir, '--tcp', '127.0.0.1:0', '--unix', 'off', '--http', '127.0.0.1:0', '--log-level', 'info'],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const ready = await firstLine(child, (line) => line.includes('control plane ready'));
  const parsed = JSON.parse(ready) as { listeners: string[]; http: string };
  return {
    tcpUrl: new URL(parsed.listeners.find((u) => u.startsWith('tcp:')) ?? ''),
    httpUrl: parsed.http,
    dataDir,
    stop: async () => {
      await stop(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startEchoServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/bench/echo-server.ts')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = Number(await firstLine(child, () => true));
  return { port, stop: () => stop(child) };
}

function firstLine(child: ChildProcess, match: (line: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (match(line)) {
        lines.removeAllListeners('line');
        child.stdout!.resume();
        resolve(line);
      }
    });
    child.once('exit', (code) => reject(new Error(`process exited (${code}) before it was ready`)));
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}
