import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRunner, type JobAssignment, type LogChunkData } from '../../agent/job-runner.js';

let workDir: string;
beforeEach(() => {
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-runner-'));
});
afterEach(() => {
  rmSync(workDir, { recursive: true, force: true });
});

function assignment(command: string[], extra: { timeoutSecs?: number; secrets?: Record<string, string>; env?: Record<string, string> } = {}): JobAssignment {
  return {
    job_id: randomUUID(),
    attempt: 1,
    job: {
      name: 'test',
      image: '',
      command,
      environment: extra.env ?? {},
      timeout: { secs: extra.timeoutSecs ?? 60, nanos: 0 },
      resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: {
      workspace_id: 'w',
      pipeline_id: 'p',
      build_number: 1,
      git_ref: 'main',
      variables: { BUILD_VAR: 'from-variables' },
      secrets: extra.secrets ?? {},
    },
    priority: 'Normal',
  };
}

function run(job: JobAssignment, options: { killGraceMs?: number; keepWorkspace?: boolean; baseEnv?: NodeJS.ProcessEnv } = {}) {
  const chunks: LogChunkData[] = [];
  const runner = new JobRunner({ assignment: job, workDir, onChunk: (c) => chunks.push(c), ...options });
  return { runner, chunks };
}

function joined(chunks: LogChunkData[], stream: 'stdout' | 'stderr'): string {
  return chunks
    .filter((c) => c.stream === stream)
    .sort((a, b) => a.seq - b.seq)
    .map((c) => c.data)
    .join('');
}

describe('JobRunner', () => {
  it('runs argv without a shell, streams output, and completes with exit code 0', async () => {
    const { runner, chunks } = run(assignment(['echo', 'hi', '$HOME']));
    const { result, metrics } = await runner.done;
    expect(result.status).toBe('Completed');
    expect(result.exit_code).toBe(0);
    expect(result.stdout).toBe('hi $HOME\n');
    expect(chunks).toEqual([expect.objectContaining({ stream: 'stdout', seq: 0, data: 'hi $HOME\n', attempt: 1 })]);
    expect(Date.parse(result.completed_at)).toBeGreaterThanOrEqual(Date.parse(result.started_at));
    expect(metrics.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('gives PATH, HOME, the job environment, variables and secrets, in a fresh directory of its own', async () => {
    const job = assignment(['sh', '-c', 'pwd; echo "$JOB_VAR $BUILD_VAR $TOKEN"; echo "leak=$LEAKY"; command -v sh >/dev/null && echo path-ok'], {
      env: { JOB_VAR: 'from-job' },
      secrets: { TOKEN: 's3cr3t' },
    });
    const { runner } = run(job, { keepWorkspace: true, baseEnv: { PATH: process.env.PATH, HOME: '/tmp', LEAKY: 'yes' } });
    const { result } = await runner.done;
    const dir = join(workDir, `${job.job_id}-1`);
    expect(result.stdout.split('\n')).toEqual([dir, 'from-job from-variables ***', 'leak=', 'path-ok', '']);
    expect(existsSync(dir)).toBe(true);
  });

  it('removes its working directory afterwards by default', async () => {
    const job = assignment(['true']);
    await run(job).runner.done;
    expect(existsSync(join(workDir, `${job.job_id}-1`))).toBe(false);
  });

  it('reports a non-zero exit as Failed with that code and the stderr', async () => {
    const { runner, chunks } = run(assignment(['sh', '-c', 'echo oops >&2; exit 3']));
    const { result } = await runner.done;
    expect(result.status).toBe('Failed');
    expect(result.exit_code).toBe(3);
    expect(result.stderr).toBe('oops\n');
    expect(joined(chunks, 'stderr')).toBe('oops\n');
  });

  it('reports a missing command as Failed, exit code 127, with a message in stderr', async () => {
    const { runner, chunks } = run(assignment(['no-such-command-muster-test', 'x']));
    const { result } = await runner.done;
    expect(result.status).toBe('Failed');
    expect(result.exit_code).toBe(127);
    expect(result.stderr).toContain('no-such-command-muster-test: command not found');
    expect(joined(chunks, 'stderr')).toBe(result.stderr);
  });

  it('fails, without throwing, for a command that cannot be passed to the system', async () => {
    const { runner } = run(assignment(['echo', 'nul\u0000byte']));
    const { result } = await runner.done;
    expect(result.status).toBe('Failed');
    expect(result.stderr).toContain('cannot start echo');
  });

  it('times out: SIGTERM to the group first, SIGKILL after the grace period for a process that traps TERM', async () => {
    const script = 'trap "echo got-term" TERM; echo ready; while :; do sleep 0.05; done';
    const { runner, chunks } = run(assignment(['sh', '-c', script], { timeoutSecs: 1 }), { killGraceMs: 700 });
    const { result, metrics } = await runner.done;
    expect(result.status).toBe('TimedOut');
    // Killed by a signal (SIGKILL: the trap kept it alive past SIGTERM).
    expect(result.exit_code).toBeNull();
    expect(result.stdout).toContain('ready\n');
    expect(result.stdout).toContain('got-term');
    expect(result.stderr).toContain('timed out');
    expect(joined(chunks, 'stdout')).toBe(result.stdout);
    expect(metrics.duration_ms).toBeGreaterThanOrEqual(1_700);
  });

  it('cancels on request: status Cancelled, the process group stopped', async () => {
    const { runner, chunks } = run(assignment(['sh', '-c', 'echo started; sleep 30 & wait']));
    while (joined(chunks, 'stdout') === '') await new Promise((r) => setTimeout(r, 20));
    runner.cancel('user asked');
    const { result } = await runner.done;
    expect(result.status).toBe('Cancelled');
    expect(result.stderr).toContain('cancelled: user asked');
    expect(runner.isFinished).toBe(true);
  });

  it('waits for `after` before it starts, and never runs when cancelled meanwhile', async () => {
    let release!: () => void;
    const after = new Promise<void>((resolve) => (release = resolve));
    const marker = join(workDir, 'ran');
    const waiting = new JobRunner({ assignment: assignment(['touch', marker]), workDir, onChunk: () => {}, after });
    const cancelled = new JobRunner({ assignment: assignment(['touch', marker]), workDir, onChunk: () => {}, after });
    cancelled.cancel('superseded');
    expect((await cancelled.done).result).toMatchObject({ status: 'Cancelled', exit_code: null });
    expect(existsSync(marker)).toBe(false);
    release();
    expect((await waiting.done).result.status).toBe('Completed');
    expect(existsSync(marker)).toBe(true);
  });

  it('masks secret values in streamed chunks and in the result, even when split across writes', async () => {
    const script = 'echo "pw=$PW"; printf hunt; sleep 0.4; printf "er2\\n"; echo "$PW" >&2';
    const { runner, chunks } = run(assignment(['sh', '-c', script], { secrets: { PW: 'hunter2' } }));
    const { result } = await runner.done;
    expect(joined(chunks, 'stdout')).toBe('pw=***\n***\n');
    expect(joined(chunks, 'stderr')).toBe('***\n');
    for (const c of chunks) expect(c.data).not.toMatch(/hunt|er2/);
    expect(result.stdout).toBe('pw=***\n***\n');
    expect(result.stderr).toBe('***\n');
  });

  it('cuts 1 MiB of output into chunks of at most 64 KiB, numbered without gaps, and keeps the last 64 KiB', async () => {
    const script = 'head -c 1048576 /dev/zero | tr "\\0" x; echo end >&2';
    const { runner, chunks } = run(assignment(['sh', '-c', script]));
    const { result } = await runner.done;
    const out = chunks.filter((c) => c.stream === 'stdout');
    expect(out.map((c) => c.seq)).toEqual(out.map((_, i) => i));
    for (const c of out) expect(Buffer.byteLength(c.data)).toBeLessThanOrEqual(64 * 1024);
    expect(out.reduce((n, c) => n + c.data.length, 0)).toBe(1_048_576);
    expect(chunks.filter((c) => c.stream === 'stderr').map((c) => c.seq)).toEqual([0]);
    expect(result.stdout).toBe('x'.repeat(64 * 1024));
  });

  it('serves a LogResync from any seq with the very chunks it sent', async () => {
    const { runner, chunks } = run(assignment(['sh', '-c', 'echo a; sleep 0.3; echo b; sleep 0.3; echo c']));
    await runner.done;
    const sent = chunks.filter((c) => c.stream === 'stdout');
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(runner.chunksFrom('stdout', 1)).toEqual(sent.slice(1));
    expect(runner.chunksFrom('stdout', 0)).toEqual(sent);
    expect(runner.chunksFrom('stderr', 0)).toEqual([]);
  });
});
