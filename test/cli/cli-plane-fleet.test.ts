// `bin/muster` against a real plane and real agents, all child processes (the second half of
// cli-plane.test.ts, in a file of its own so that the two run side by side): artifacts, the node
// table and undrain, a plane killed and restarted under a waiting client and a follower, and the
// cluster and stats commands.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NodeDetail } from '../../supervisor/admin/wire-types.js';
import { packageVersion } from '../../supervisor/package-version.js';
import { uniqueTag, waitFor } from '../e2e/harness.js';
import { cliPlane, WAIT_MS } from './cli-plane-fixture.js';

const f = cliPlane();
const { harness, cli, muster } = f;

describe('muster job artifacts against a real plane', () => {
  it('submit --artifact uploads the matching files; artifacts lists them and --download writes them, digest checked', async () => {
    const pool = uniqueTag('artifacts');
    await harness.startAgent(f.plane, { tags: { pool } });
    const script = 'mkdir -p dist && printf one > dist/a.tar.gz && printf twotwo > dist/b.tar.gz && printf no > dist/c.txt';
    const submitted = await muster(['job', 'submit', '--selector', `pool=${pool}`, '--artifact', 'dist/*.tar.gz', '--', 'sh', '-c', script]);
    const jobId = submitted.stdout.trim();
    expect((await f.plane.api.waitForJob(jobId, WAIT_MS)).state).toBe('Completed');
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
    const agent = await harness.startAgent(f.plane, { tags: { pool } });
    const table = await muster(['nodes']);
    const row = table.stdout.split('\n').find((l) => l.startsWith(agent.nodeId));
    expect(row?.split(/\s{2,}/).slice(3, 8)).toEqual(['ready', '0', `pool=${pool}`, 'tcp', '2']);
    expect((await muster(['drain', agent.nodeId])).code).toBe(0);
    // The agent reports Draining too: the node stays draining until it is undrained.
    await agent.proc.waitForLog((l) => l.msg === 'control plane asked to drain; taking no new jobs', WAIT_MS, 'drain seen');
    await waitFor(async () => (await f.plane.api.node(agent.nodeId))?.state === 'draining', WAIT_MS, 'node draining');
    const undrain = await muster(['undrain', agent.nodeId]);
    expect(undrain.code).toBe(0);
    await waitFor(async () => (await f.plane.api.node(agent.nodeId))?.state === 'ready', WAIT_MS, 'node ready again');
    const run = await muster(['job', 'submit', '--wait', '--selector', `pool=${pool}`, '--', 'echo', 'back']);
    expect(run).toMatchObject({ code: 0, stdout: 'back\n' });
    // The node's own entry: what it registered with, and how it got where it is.
    const detail = await f.plane.api.request<NodeDetail>('GET', `/v1/nodes/${agent.nodeId}`);
    expect(detail.status).toBe(200);
    expect(detail.body).toMatchObject({ node_id: agent.nodeId, transport: 'tcp', protocol_version: 2, tags: { pool } });
    expect(detail.body.capabilities?.runner_types.length).toBeGreaterThan(0);
    const path = (detail.body.transitions ?? []).map((t) => `${t.from}>${t.to}`).join(' ');
    expect(path).toMatch(/^registering>ready .*ready>draining draining>ready/);
    expect((await f.plane.api.request('GET', '/v1/nodes/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    // A node that is not draining: one line, exit 1.
    const again = await muster(['undrain', agent.nodeId]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^muster: node \S+ is not draining \(conflict\)\n$/);
  }, 60_000);

  it('hides a dead node unless --all is given', async () => {
    const agent = await harness.startAgent(f.plane, { tags: { pool: uniqueTag('dead') } });
    agent.kill9();
    await waitFor(async () => (await f.plane.api.node(agent.nodeId))?.state === 'dead', WAIT_MS, 'node dead');
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
    await harness.startAgent(f.plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo before; while [ ! -e "${gate.path}" ]; do sleep 0.05; done; echo after; exit 5`;
    const waiting = cli(['job', 'submit', '--wait', '--reconnect-window', '60s', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    const [, jobId] = await waiting.stderrMatch(/^job ([0-9a-f-]{36})\n/, 'the job id');
    const follow = cli(['job', 'logs', jobId as string, '--follow']);
    await waiting.stdoutHas('before\n');
    await follow.stdoutHas('before\n');

    f.plane.proc.kill9();
    await f.plane.proc.exited;
    await waiting.stderrMatch(/muster: lost the control plane \([^\n]*\); reconnecting for up to 60s\n/, 'the lost line');
    await follow.stderrMatch(/muster: lost the control plane/, 'the lost line');
    f.restarted(await f.plane.restart());
    await waiting.stderrMatch(/muster: reconnected to the control plane/, 'the reconnected line');
    await follow.stderrMatch(/muster: reconnected to the control plane/, 'the reconnected line');
    gate.open();

    expect(await waiting.exited).toBe(5);
    expect(await follow.exited).toBe(0);
    // Nothing twice, nothing skipped.
    expect(waiting.stdout).toBe('before\nafter\n');
    expect(follow.stdout).toBe('before\nafter\n');
    expect((await f.plane.api.job(jobId as string)).state).toBe('Failed');
  }, 120_000);

  it('gives up after the reconnect window, naming the plane it could not reach', async () => {
    const pool = uniqueTag('giveup');
    await harness.startAgent(f.plane, { tags: { pool } });
    const gate = harness.gate();
    const script = `echo before; while [ ! -e "${gate.path}" ]; do sleep 0.05; done`;
    const waiting = cli(['job', 'submit', '--wait', '--reconnect-window', '2s', '--selector', `pool=${pool}`, '--', 'sh', '-c', script]);
    await waiting.stdoutHas('before\n');
    const stopped = f.plane;
    await stopped.stop();
    expect(await waiting.exited).toBe(1);
    expect(waiting.stderr).toMatch(/muster: lost the control plane[^\n]*reconnecting for up to 2s\n/);
    expect(waiting.stderr).toMatch(/\nmuster: cannot reach the admin API at http:\/\/127\.0\.0\.1:\d+: [^\n]+\n$/);
    f.restarted(await stopped.restart());
    gate.open();
  }, 90_000);
});

describe('muster cluster against a real plane', () => {
  it('lists the embedded plane as its one replica, with no NATS', async () => {
    const text = await muster(['cluster']);
    expect(text.code).toBe(0);
    const [header, row, mode] = text.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^REPLICA +NODES +VERSION +FORMAT +STARTED +LAST RENEWAL$/);
    // The embedded plane has Muster's version and no cluster format.
    expect(row?.split(/\s{2,}/)).toEqual([expect.any(String), expect.stringMatching(/^\d+$/), packageVersion(), '-', expect.stringMatching(/Z$/), '-']);
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
