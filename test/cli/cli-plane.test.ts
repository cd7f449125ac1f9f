// `bin/muster` against a real plane (`muster serve`) and real agents, all child processes:
// what `job submit --wait` says while it waits, Ctrl-C, a plane killed and restarted under a
// waiting client and a follower, `job logs --follow` from the start, `job get`'s summary,
// the node table, and undrain.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeDetail } from '../../supervisor/admin/wire-types.js';
import { BIN, Harness, runMuster, uniqueTag, waitFor, type PlaneProcess } from '../e2e/harness.js';

const WAIT_MS = 30_000;

/** A CLI process whose stdout and stderr are kept apart, to be waited on. */
class Cli {
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

const harness = new Harness();
const clis: Cli[] = [];
let plane: PlaneProcess;

function cli(args: string[]): Cli {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  const child = spawn(BIN, args, {
    cwd: tmpdir(),
    env: { ...clean, ...where() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const c = new Cli(child);
  clis.push(c);
  return c;
}

function muster(args: string[]) {
  return runMuster(args, where());
}

/** The plane to talk to, as variables: options after a job's command would be the command's. */
function where(): Record<string, string> {
  return { MUSTER_API: plane.httpUrl, MUSTER_DATA_DIR: plane.dataDir };
}

beforeAll(async () => {
  plane = await harness.startPlane();
}, 60_000);

afterAll(async () => {
  for (const c of clis) c.child.kill('SIGKILL');
  await harness.close();
}, 60_000);

describe('muster job submit --wait against a real plane', () => {
  it('prints the job id at once, then what the job waits for as it changes, then its output and exit code', async () => {
    const pool = uniqueTag('wait');
    const gate = harness.gate();
    const script = `while [ ! -e "${gate.path}" ]; do sleep 0.05; done; echo ran; exit 4`;
    const waiting = cli(['job', 'submit', '--wait', '--status', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, jobId] = await waiting.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await waiting.stderrMatch(/muster: queued[^\n]*\n/, 'the queued line');
    const agent = await harness.startAgent(plane, { tags: { pool } });
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
    await harness.startAgent(plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo started; while [ ! -e "${gate.path}" ]; do sleep 0.05; done`;

    const left = cli(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, leftId] = await left.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await left.stdoutHas('started\n');
    left.child.kill('SIGINT');
    expect(await left.exited).toBe(130);
    expect(left.stderr).toContain(`muster: stopped waiting; job ${leftId} goes on. Cancel it with: muster job cancel ${leftId}\n`);
    expect((await plane.api.job(leftId as string)).state).toBe('Running');

    const cancelled = cli(['job', 'submit', '--wait', '--cancel-on-interrupt', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, cancelledId] = await cancelled.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    await cancelled.stdoutHas('started\n');
    cancelled.child.kill('SIGINT');
    expect(await cancelled.exited).toBe(130);
    expect(cancelled.stderr).toContain(`muster: interrupted; cancel requested for job ${cancelledId}`);
    expect((await plane.api.waitForJob(cancelledId as string, WAIT_MS)).state).toBe('Cancelled');
    gate.open();
    expect((await plane.api.waitForJob(leftId as string, WAIT_MS)).state).toBe('Completed');
  }, 90_000);
});

describe('a job that runs again while it is waited for', () => {
  it('says which attempt started where, and shows only that attempt\'s output from there', async () => {
    const pool = uniqueTag('again');
    // Attempt 1 goes to a fake node, which a test can have send output after it lost the attempt.
    const fake = await harness.fakeNode(plane.tcpUrl);
    await fake.register({ token: await harness.mintToken(plane.dataDir, 'node'), tags: { pool } });
    const gate = harness.gate();
    const script = `echo two; while [ ! -e "${gate.path}" ]; do sleep 0.05; done; exit 3`;
    const waiting = cli(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const assigned = await fake.next('JobAssignment', () => true, WAIT_MS);
    const jobId = assigned.data.job_id;
    fake.send('JobAccepted', { job_id: jobId, attempt: 1 });
    fake.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'one\n' });
    await waiting.stdoutHas('one\n');

    // The fake node takes no new job and gives attempt 1 up: attempt 2 runs on a real agent.
    expect((await plane.api.drain(fake.nodeId as string)).status).toBe(202);
    await waitFor(async () => (await plane.api.node(fake.nodeId as string))?.state === 'draining', WAIT_MS, 'fake node draining');
    const agent = await harness.startAgent(plane, { tags: { pool } });
    fake.send('JobRejected', { job_id: jobId, attempt: 1, reason: 'given up by the test' });
    await waiting.stdoutHas('two\n');
    // Attempt 1 still writes after attempt 2 started: the plane keeps it, the waiting client skips it.
    fake.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 1, data: 'late\n' });
    await waitFor(async () => (await plane.api.logs(jobId)).some((c) => c.data === 'late\n'), WAIT_MS, 'the late chunk stored');
    gate.open();

    expect(await waiting.exited).toBe(3);
    expect(waiting.stdout).toBe('one\ntwo\n');
    expect(waiting.stderr).toContain(`\nmuster: attempt 2 started on node ${agent.nodeId} (${hostname()})\n`);
    expect((await plane.api.job(jobId)).attempt).toBe(2);
    // Every attempt's output is still there for `muster job logs`.
    expect((await muster(['job', 'logs', jobId])).stdout).toBe('one\ntwo\nlate\n');
  }, 90_000);
});

describe('muster job logs --follow against a real plane', () => {
  it('prints what the job already wrote, then follows; `job cancel` from another terminal ends it', async () => {
    const pool = uniqueTag('follow');
    await harness.startAgent(plane, { tags: { pool } });
    const script = 'echo early; sleep 0.3; echo later; sleep 30';
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const jobId = submitted.stdout.trim();
    await waitFor(async () => (await plane.api.stdout(jobId)).includes('later'), WAIT_MS, 'the job to write both lines');
    const follow = cli(['job', 'logs', jobId, '--follow']);
    await follow.stdoutHas('early\nlater\n');
    const cancel = await muster(['job', 'cancel', jobId]);
    expect(cancel.code).toBe(0);
    expect(await follow.exited).toBe(0);
    expect(follow.stdout).toBe('early\nlater\n');
    expect((await plane.api.job(jobId)).state).toBe('Cancelled');
  }, 60_000);
});

describe('muster job get against a real plane', () => {
  it('prints a summary with the last lines of output, and the JSON with --json', async () => {
    const pool = uniqueTag('get');
    const agent = await harness.startAgent(plane, { tags: { pool } });
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--', 'sh', '-c', 'seq 1 25; exit 2']);
    const jobId = submitted.stdout.trim();
    await plane.api.waitForJob(jobId, WAIT_MS);
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

describe('muster job artifacts against a real plane', () => {
  it('submit --artifact uploads the matching files; artifacts lists them and --download writes them, digest checked', async () => {
    const pool = uniqueTag('artifacts');
    await harness.startAgent(plane, { tags: { pool } });
    const script = 'mkdir -p dist && printf one > dist/a.tar.gz && printf twotwo > dist/b.tar.gz && printf no > dist/c.txt';
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--artifact', 'dist/*.tar.gz', '--', 'sh', '-c', script]);
    const jobId = submitted.stdout.trim();
    expect((await plane.api.waitForJob(jobId, WAIT_MS)).state).toBe('Completed');
    const listed = await muster(['job', 'artifacts', jobId]);
    expect(listed.code).toBe(0);
    const rows = listed.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^NAME +SIZE +ATTEMPT +SHA256$/);
    expect(rows.slice(1).map((r) => r.split(/ +/).slice(0, 3))).toEqual([
      ['dist/a.tar.gz', '3', '1'],
      ['dist/b.tar.gz', '6', '1'],
    ]);
    const dir = mkdtempSync(join(tmpdir(), 'muster-cli-artifacts-'));
    const downloaded = await muster(['job', 'artifacts', jobId, '--download', dir]);
    expect(downloaded.code).toBe(0);
    expect(readFileSync(join(dir, 'dist', 'a.tar.gz'), 'utf8')).toBe('one');
    expect(readFileSync(join(dir, 'dist', 'b.tar.gz'), 'utf8')).toBe('twotwo');
    expect(readdirSync(join(dir, 'dist')).sort()).toEqual(['a.tar.gz', 'b.tar.gz']);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);
});

describe('muster nodes and undrain against a real plane', () => {
  it('shows transport, protocol and owner; undrain returns a drained agent to service', async () => {
    const pool = uniqueTag('undrain');
    const agent = await harness.startAgent(plane, { tags: { pool } });
    const table = await muster(['nodes']);
    const row = table.stdout.split('\n').find((l) => l.startsWith(agent.nodeId));
    expect(row?.split(/\s{2,}/).slice(3, 8)).toEqual(['ready', '0', `pool=${pool}`, 'tcp', '2']);
    expect((await muster(['drain', agent.nodeId])).code).toBe(0);
    // The agent reports Draining too: the node stays draining until it is undrained.
    await agent.proc.waitForLog((l) => l.msg === 'control plane asked to drain; taking no new jobs', WAIT_MS, 'drain seen');
    await waitFor(async () => (await plane.api.node(agent.nodeId))?.state === 'draining', WAIT_MS, 'node draining');
    const undrain = await muster(['undrain', agent.nodeId]);
    expect(undrain.code).toBe(0);
    await waitFor(async () => (await plane.api.node(agent.nodeId))?.state === 'ready', WAIT_MS, 'node ready again');
    const run = await muster(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'echo', 'back']);
    expect(run).toMatchObject({ code: 0, stdout: 'back\n' });
    // The node's own entry: what it registered with, and how it got where it is.
    const detail = await plane.api.request<NodeDetail>('GET', `/v1/nodes/${agent.nodeId}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ node_id: agent.nodeId, transport: 'tcp', protocol_version: 2, tags: { pool } });
    expect(detail.body.capabilities?.runner_types.length).toBeGreaterThan(0);
    const path = (detail.body.transitions ?? []).map((t) => `${t.from}>${t.to}`).join(' ');
    expect(path).toMatch(/^registering>ready .*ready>draining draining>ready/);
    expect((await plane.api.request('GET', '/v1/nodes/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    // A node that is not draining: one line, exit 1.
    const again = await muster(['undrain', agent.nodeId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^muster: node \S+ is not draining \(conflict\)\n$/);
  }, 60_000);

  it('hides a dead node unless --all is given', async () => {
    const agent = await harness.startAgent(plane, { tags: { pool: uniqueTag('dead') } });
    agent.kill9();
    await waitFor(async () => (await plane.api.node(agent.nodeId))?.state === 'dead', WAIT_MS, 'node dead');
    const table = await muster(['nodes']);
    expect(table.stdout).not.toContain(agent.nodeId);
    expect(table.stdout).toMatch(/\(\d+ dead nodes? not shown: --all\)\n$/);
    const all = await muster(['nodes', '--all']);
    expect(all.stdout.split('\n').find((l) => l.startsWith(agent.nodeId))).toMatch(/\sdead\s/);
  }, 60_000);
});

describe('a plane restart under a waiting client and a follower', () => {
  it('both reconnect, say so, resume after the last chunk, and end with the job', async () => {
    const pool = uniqueTag('restart');
    await harness.startAgent(plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo before; while [ ! -e "${gate.path}" ]; do sleep 0.05; done; echo after; exit 5`;
    const waiting = cli(['job', 'submit', '--wait', '--reconnect-window', '60s', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, jobId] = await waiting.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    const follow = cli(['job', 'logs', jobId as string, '--follow']);
    await waiting.stdoutHas('before\n');
    await follow.stdoutHas('before\n');

    plane.proc.kill9();
    await plane.proc.exited;
    await waiting.stderrMatch(/muster: lost the control plane \([^\n]*\); reconnecting for up to 60s\n/, 'the lost line');
    await follow.stderrMatch(/muster: lost the control plane/, 'the lost line');
    plane = await plane.restart();
    await waiting.stderrMatch(/muster: reconnected to the control plane/, 'the reconnected line');
    await follow.stderrMatch(/muster: reconnected to the control plane/, 'the reconnected line');
    gate.open();

    expect(await waiting.exited).toBe(5);
    expect(await follow.exited).toBe(0);
    // Nothing twice, nothing skipped.
    expect(waiting.stdout).toBe('before\nafter\n');
    expect(follow.stdout).toBe('before\nafter\n');
    expect((await plane.api.job(jobId as string)).state).toBe('Failed');
  }, 120_000);

  it('gives up after the reconnect window, naming the plane it could not reach', async () => {
    const pool = uniqueTag('giveup');
    await harness.startAgent(plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo before; while [ ! -e "${gate.path}" ]; do sleep 0.05; done`;
    const waiting = cli(['job', 'submit', '--wait', '--reconnect-window', '2s', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    await waiting.stdoutHas('before\n');
    const stopped = plane;
    await stopped.stop();
    expect(await waiting.exited).toBe(1);
    expect(waiting.stderr).toMatch(/muster: lost the control plane[^\n]*reconnecting for up to 2s\n/);
    expect(waiting.stderr).toMatch(/\nmuster: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: [^\n]+\n$/);
    plane = await stopped.restart();
    gate.open();
  }, 90_000);
});

describe('muster cluster against a real plane', () => {
  it('lists the embedded plane as its one replica, with no NATS', async () => {
    const text = await muster(['cluster']);
    expect(text.code).toBe(0);
    const [header, row, mode] = text.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^REPLICA +NODES +STARTED +LAST RENEWAL$/);
    expect(row?.split(/\s{2,}/)).toEqual([expect.any(String), expect.stringMatching(/^\d+$/), expect.stringMatching(/Z$/), '-']);
    expect(mode).toBe('embedded: no NATS (embedded plane)');
    const json = JSON.parse((await muster(['cluster', '--json'])).stdout) as { mode: string; replicas: unknown[]; nats: unknown };
    expect(json).toMatchObject({ mode: 'embedded', nats: null });
    expect(json.replicas).toHaveLength(1);
  }, 60_000);
});

describe('muster stats against a real plane', () => {
  it('prints the readiness and the counters, and both as JSON with --json', async () => {
    const text = await muster(['stats']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^status: ready\n/);
    expect(text.stdout).toMatch(/^active_connections +\d+$/m);
    expect(text.stdout).toMatch(/^queued_normal +\d+$/m);
    expect(text.stdout).toMatch(/^jobs_Completed +\d+$/m);
    const json = await muster(['stats', '--json']);
    expect(json.code).toBe(0);
    const answer = JSON.parse(json.stdout) as { readyz: { status: string }; stats: Record<string, number> };
    expect(answer.readyz).toEqual({ status: 'ready' });
    expect(typeof answer.stats.total_messages_received).toBe('number');
    expect(typeof answer.stats.nodes_ready).toBe('number');
  });
});
