// `bin/muster` against a real plane (`muster serve`) and real agents, all child processes:
// what `job submit --wait` says while it waits, Ctrl-C, a job that runs again while waited for,
// `job logs --follow` from the start, `job logs` into a reader that stops reading, and `job get`'s
// summary (the rest: cli-plane-fleet.test.ts).
import { spawn } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { uniqueTag, waitFor } from '../e2e/harness.js';
import { MUSTER_BIN } from '../muster-process.js';
import { cliPlane, WAIT_MS } from './cli-plane-fixture.js';

const f = cliPlane();
const { harness, cli, muster, where } = f;

describe('muster job submit --wait against a real plane', () => {
  it('prints the job id at once, then what the job waits for as it changes, then its output and exit code', async () => {
    const pool = uniqueTag('wait');
    const gate = harness.gate();
    const script = `while [ ! -e "${gate.path}" ]; do sleep 0.05; done; echo ran; exit 4`;
    const waiting = cli(['job', 'submit', '--wait', '--status', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, jobId] = await waiting.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await waiting.stderrMatch(/muster: queued[^\n]*\n/, 'the queued line');
    const agent = await harness.startAgent(f.plane, { tags: { pool } });
    await waiting.stderrMatch(/muster: running on node [^\n]*\n/, 'the running line');
    gate.open();
    expect(await waiting.exited).toBe(4);
    expect(waiting.stdout).toBe('ran\n');
    const lines = waiting.stderr.trim().split('\n');
    expect(lines[0]).toBe(`job ${jobId}`);
    // With the plane's `waiting_for`, or from the selector alone where the plane does not say.
    expect(lines[1]).toMatch(new RegExp(`^muster: queued: (no ready node matches|waiting for a ready node matching) pool=${pool}$`));
    // The node by id and hostname; each status once (printed when it changes), none after the end.
    expect(lines).toContain(`muster: running on node ${agent.nodeId} (${hostname()})`);
    expect(lines.at(-1)).toBe(`muster: running on node ${agent.nodeId} (${hostname()})`);
    expect(new Set(lines).size).toBe(lines.length);
  }, 60_000);

  it('Ctrl-C stops waiting and says how to cancel; the job goes on; --cancel-on-interrupt cancels it', async () => {
    const pool = uniqueTag('sigint');
    await harness.startAgent(f.plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo started; while [ ! -e "${gate.path}" ]; do sleep 0.05; done`;

    const left = cli(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, leftId] = await left.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await left.stdoutHas('started\n');
    left.child.kill('SIGINT');
    expect(await left.exited).toBe(130);
    expect(left.stderr).toContain(`muster: stopped waiting; job ${leftId} goes on. Cancel it with: muster job cancel ${leftId}\n`);
    expect((await f.plane.api.job(leftId as string)).state).toBe('Running');

    const cancelled = cli(['job', 'submit', '--wait', '--cancel-on-interrupt', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, cancelledId] = await cancelled.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await cancelled.stdoutHas('started\n');
    cancelled.child.kill('SIGINT');
    expect(await cancelled.exited).toBe(130);
    expect(cancelled.stderr).toContain(`muster: interrupted; cancel requested for job ${cancelledId}`);
    expect((await f.plane.api.waitForJob(cancelledId as string, WAIT_MS)).state).toBe('Cancelled');
    gate.open();
    expect((await f.plane.api.waitForJob(leftId as string, WAIT_MS)).state).toBe('Completed');
  }, 90_000);
});

describe('a job that runs again while it is waited for', () => {
  it('says which attempt started where, and shows only that attempt\'s output from there', async () => {
    const pool = uniqueTag('again');
    // Attempt 1 goes to a fake node, which a test can have send output after it lost the attempt.
    const fake = await harness.fakeNode(f.plane.tcpUrl);
    await fake.register({ token: await harness.mintToken(f.plane.dataDir, 'node'), tags: { pool } });
    const gate = harness.gate();
    const script = `echo two; while [ ! -e "${gate.path}" ]; do sleep 0.05; done; exit 3`;
    const waiting = cli(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const assigned = await fake.next('JobAssignment', () => true, WAIT_MS);
    const jobId = assigned.data.job_id;
    fake.send('JobAccepted', { job_id: jobId, attempt: 1 });
    fake.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'one\n' });
    await waiting.stdoutHas('one\n');

    // The fake node takes no new job and gives attempt 1 up: attempt 2 runs on a real agent.
    expect((await f.plane.api.drain(fake.nodeId as string)).status).toBe(202);
    await waitFor(async () => (await f.plane.api.node(fake.nodeId as string))?.state === 'draining', WAIT_MS, 'fake node draining');
    const agent = await harness.startAgent(f.plane, { tags: { pool } });
    fake.send('JobRejected', { job_id: jobId, attempt: 1, reason: 'given up by the test' });
    await waiting.stdoutHas('two\n');
    // Attempt 1 still writes after attempt 2 started: the plane keeps it, the waiting client skips it.
    fake.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 1, data: 'late\n' });
    await waitFor(async () => (await f.plane.api.logs(jobId)).some((c) => c.data === 'late\n'), WAIT_MS, 'the late chunk stored');
    gate.open();

    expect(await waiting.exited).toBe(3);
    expect(waiting.stdout).toBe('one\ntwo\n');
    expect(waiting.stderr).toContain(`\nmuster: attempt 2 started on node ${agent.nodeId} (${hostname()})\n`);
    expect((await f.plane.api.job(jobId)).attempt).toBe(2);
    // Every attempt's output is still there for `muster job logs`.
    expect((await muster(['job', 'logs', jobId])).stdout).toBe('one\ntwo\nlate\n');
  }, 90_000);
});

describe('muster job logs --follow against a real plane', () => {
  it('prints what the job already wrote, then follows; `job cancel` from another terminal ends it', async () => {
    const pool = uniqueTag('follow');
    await harness.startAgent(f.plane, { tags: { pool } });
    const script = 'echo early; sleep 0.3; echo later; sleep 30';
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const jobId = submitted.stdout.trim();
    await waitFor(async () => (await f.plane.api.stdout(jobId)).includes('later'), WAIT_MS, 'the job to write both lines');
    const follow = cli(['job', 'logs', jobId, '--follow']);
    await follow.stdoutHas('early\nlater\n');
    const cancel = await muster(['job', 'cancel', jobId]);
    expect(cancel.code).toBe(0);
    expect(await follow.exited).toBe(0);
    expect(follow.stdout).toBe('early\nlater\n');
    expect((await f.plane.api.job(jobId)).state).toBe('Cancelled');
  }, 60_000);
});

describe('muster job logs into a reader that stops reading (| head)', () => {
  it('ends quietly with status 0, as cat does, not with a stack trace', async () => {
    const pool = uniqueTag('head');
    await harness.startAgent(f.plane, { tags: { pool } });
    // About 1.3 MB of output: many chunks, so the command still writes after the reader has gone.
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--', 'seq', '1', '200000']);
    const jobId = submitted.stdout.trim();
    await f.plane.api.waitForJob(jobId, WAIT_MS);
    const child = spawn(MUSTER_BIN, ['job', 'logs', jobId], { cwd: tmpdir(), env: { ...process.env, ...where() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The first bytes arrive, then the reader goes away, as head does after its lines.
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.stdout.destroy();
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
  }, 60_000);
});

describe('muster job get against a real plane', () => {
  it('prints a summary with the last lines of output, and the JSON with --json', async () => {
    const pool = uniqueTag('get');
    const agent = await harness.startAgent(f.plane, { tags: { pool } });
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--', 'sh', '-c', 'seq 1 25; exit 2']);
    const jobId = submitted.stdout.trim();
    await f.plane.api.waitForJob(jobId, WAIT_MS);
    const got = await muster(['job', 'get', jobId]);
    expect(got.code).toBe(0);
    const text = got.stdout;
    expect(text).toMatch(new RegExp(`^job +${jobId}\\n`));
    expect(text).toMatch(/\nstate +Failed/);
    expect(text).toMatch(/\nattempt +1 of \d+\n/);
    expect(text).toContain(`${agent.nodeId} (${hostname()})`);
    expect(text).toMatch(/\nexit code +2\n/);
    expect(text).toMatch(/\nsubmitted +\S+Z \(\d+s ago\)\n/);
    // The last ten lines, not the whole output.
    expect(text).toContain('last 10 lines of output');
    expect(text.trimEnd().split('\n').slice(-10)).toEqual(Array.from({ length: 10 }, (_, i) => `  ${16 + i}`));
    expect(text).not.toMatch(/^ {2}15$/m);
    const json = await muster(['job', 'get', '--json', jobId]);
    expect(JSON.parse(json.stdout)).toMatchObject({ job_id: jobId, state: 'Failed', result: { exit_code: 2 } });
  }, 60_000);
});
