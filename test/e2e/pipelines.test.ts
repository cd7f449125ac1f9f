// End to end, a pipeline as a CI system drives it with the `muster` command against a real
// `muster serve` and a real agent: `job submit --file` sends a batch (all or none), `job list`
// shows it (table, filters, --json), and `job retry` runs a failed job again as its next attempt.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, runMuster, uniqueTag, type AgentProcess, type PlaneProcess } from './harness.js';

const h = new Harness();
let plane: PlaneProcess;
let agent: AgentProcess;
let client: string[];
const group = uniqueTag('pipeline');

beforeAll(async () => {
  plane = await h.startPlane();
  agent = await h.startAgent(plane, { tags: { group } });
  client = ['--api', plane.httpUrl, '--data-dir', plane.dataDir];
}, 60_000);

afterAll(async () => {
  await h.close();
}, 60_000);

function jobsFile(jobs: unknown[]): string {
  const file = join(h.tempDir('muster-jobs-file-'), 'jobs.json');
  writeFileSync(file, JSON.stringify({ jobs }));
  return file;
}

const step = (name: string, script: string): Record<string, unknown> => ({
  job: { name, command: ['sh', '-c', script] },
  selector: { tags: { group } },
});

describe('a pipeline through the muster command', () => {
  it('submits a file of jobs as one batch, lists them, and retries the one that failed', async () => {
    const flag = join(h.tempDir('muster-flag-'), 'second-try');
    const file = jobsFile([
      step('build', 'echo built'),
      // Fails the first time, passes once the flag file exists (written by the test before the retry).
      step('flaky', `[ -e "${flag}" ] && echo passed || exit 4`),
      step('lint', 'echo linted'),
    ]);
    const submitted = await runMuster(['job', 'submit', ...client, '--file', file]);
    expect(submitted.code, submitted.stderr).toBe(0);
    const ids = submitted.stdout.trim().split('\n');
    expect(ids).toHaveLength(3);
    const [build, flaky, lint] = ids as [string, string, string];
    for (const id of ids) await plane.api.waitForJob(id, 30_000);
    expect((await plane.api.job(build)).state).toBe('Completed');
    expect((await plane.api.job(flaky)).state).toBe('Failed');

    const table = await runMuster(['job', 'list', ...client]);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^JOB_ID\s+STATE\s+ATTEMPT\s+PRIORITY\s+NODE\s+NAME$/);
    // Newest first: the file's order reversed.
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual([lint, flaky, build]);
    expect(lines[2]).toMatch(new RegExp(`^${flaky}\\s+Failed\\s+1\\s+Normal\\s+${agent.nodeId}\\s+flaky$`));

    const failed = await runMuster(['job', 'list', ...client, '--state', 'Failed', '--node', agent.nodeId, '--json']);
    expect(failed.code, failed.stderr).toBe(0);
    expect((JSON.parse(failed.stdout) as { job_id: string }[]).map((j) => j.job_id)).toEqual([flaky]);

    writeFileSync(flag, '');
    const retried = await runMuster(['job', 'retry', ...client, flaky]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toBe(`job ${flaky} queued again as attempt 2\n`);
    const again = await plane.api.waitForJob(flaky, 30_000);
    expect(again).toMatchObject({ state: 'Completed', attempt: 2, result: { stdout: 'passed\n' } });
    expect(agent.startedAttempts(flaky)).toEqual([1, 2]);

    // A Completed job is not retried: the command says why and fails.
    const refused = await runMuster(['job', 'retry', ...client, build]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('Completed');
  }, 90_000);

  it('stores nothing from a file with one invalid job, and says which', async () => {
    const before = (await plane.api.request<{ jobs: unknown[] }>('GET', '/v1/jobs?limit=1000')).body.jobs.length;
    const file = jobsFile([step('ok', 'true'), { job: { command: [] } }]);
    const run = await runMuster(['job', 'submit', ...client, '--file', file]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('jobs[1].job.command');
    expect((await plane.api.request<{ jobs: unknown[] }>('GET', '/v1/jobs?limit=1000')).body.jobs.length).toBe(before);
  }, 30_000);
});
