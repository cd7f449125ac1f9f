import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { startAgent, type Agent, type AgentOptions } from '../../agent/agent.js';
import type { MessageData } from '../../protocol/messages.js';
import '../../transports/builtin.js';
import { CODEC_JSON, CODEC_MSGPACK, FakePlane, type PlaneConn } from './fake-plane.js';
import { jobAssignment } from './agent-process.js';

const TOKEN = 'registration.jwt.token';
const logger = pino({ level: 'silent' });

let plane: FakePlane;
let workDir: string;
let agents: Agent[];

beforeEach(async () => {
  plane = await FakePlane.start();
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-agent-'));
  agents = [];
});

afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await plane.close();
  rmSync(workDir, { recursive: true, force: true });
});

function agent(extra: Partial<AgentOptions> = {}): Agent {
  const a = startAgent({
    urls: [plane.url],
    token: TOKEN,
    workDir,
    tags: { pool: 'test' },
    logger,
    backoff: { baseMs: 20, capMs: 200 },
    ...extra,
  });
  agents.push(a);
  return a;
}

/** A logger whose lines the test can await: the agent's own account of what it did. */
function logEvents(): { logger: Logger; next(msg: string, fields: Record<string, unknown>): Promise<void> } {
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  const logger = pino(
    { level: 'info' },
    {
      write(line: string) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
        for (const w of waiters.splice(0)) w();
      },
    },
  );
  const seen = (msg: string, fields: Record<string, unknown>): boolean =>
    lines.some((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
  return {
    logger,
    async next(msg, fields) {
      while (!seen(msg, fields)) await new Promise<void>((resolve) => waiters.push(resolve));
    },
  };
}

function ack(nodeId: string, extra: Partial<MessageData<'RegisterAck'>> = {}): MessageData<'RegisterAck'> {
  return {
    node_id: nodeId,
    session_token: `session-for-${nodeId}`,
    session_expires_at: '2099-01-01T00:00:00Z',
    heartbeat_interval_ms: 5_000,
    protocol_version: 1,
    control_plane_id: 'fake-plane',
    resumed: false,
    ...extra,
  };
}

async function registered(conn: PlaneConn, nodeId = randomUUID(), extra: Partial<MessageData<'RegisterAck'>> = {}) {
  const reg = await conn.next('RegisterNode');
  conn.send('RegisterAck', ack(nodeId, extra));
  return { nodeId, reg };
}

describe('Agent', () => {
  it('registers with the real host facts and the registration token, in MessagePack', async () => {
    agent();
    const conn = await plane.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.codecByte).toBe(CODEC_MSGPACK);
    const { node_info: info, capabilities: caps, auth_token, resume } = reg.data;
    expect(auth_token).toBe(TOKEN);
    expect(resume).toBeUndefined();
    expect(info.hostname).toBe(os.hostname());
    expect(info.platform).toBe(os.platform());
    expect(info.architecture).toBe(os.arch());
    expect(info.tags).toEqual({ pool: 'test' });
    expect(net.isIPv4(info.ip_address)).toBe(true);
    expect(caps.max_resources.cpu_cores).toBe(os.cpus().length);
    expect(caps.max_resources.memory_mb).toBe(Math.floor(os.totalmem() / 1024 / 1024));
    expect(caps.max_resources.disk_gb).toBeGreaterThan(0);
    expect(caps.runner_types).toEqual(['shell']);
    expect(caps.supported_job_types).toEqual(['command']);
  });

  it('heartbeats at the interval from RegisterAck, with its node id and real resource figures', async () => {
    agent();
    const conn = await plane.nextConnection();
    const { nodeId } = await registered(conn, randomUUID(), { heartbeat_interval_ms: 100 });
    const beats = [await conn.next('Heartbeat'), await conn.next('Heartbeat'), await conn.next('Heartbeat')];
    for (const hb of beats) {
      expect(hb.data.node_id).toBe(nodeId);
      expect(hb.data.status).toBe('Ready');
      expect(hb.data.resources.cpu_cores).toBe(os.cpus().length);
      expect(hb.data.resources.available_memory_mb).toBeLessThanOrEqual(hb.data.resources.memory_mb);
      expect(hb.data.metrics.memory_usage_percent).toBeGreaterThan(0);
    }
  });

  it('runs an assigned `echo hi`: JobAccepted, a LogChunk, then the JobResult', async () => {
    agent();
    const conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    const job = jobAssignment(['echo', 'hi']);
    conn.send('JobAssignment', job);
    expect((await conn.next('JobAccepted')).data).toEqual({ job_id: job.job_id, attempt: 1 });
    const chunk = await conn.next('LogChunk');
    expect(chunk.data).toEqual({ job_id: job.job_id, attempt: 1, stream: 'stdout', seq: 0, data: 'hi\n' });
    const result = await conn.next('JobResult');
    expect(result.data).toMatchObject({
      job_id: job.job_id,
      attempt: 1,
      node_id: nodeId,
      result: { status: 'Completed', exit_code: 0, stdout: 'hi\n', stderr: '' },
    });
    // The job's trace is continued on what the agent sends about it.
    expect(result.traceparent).toMatch(/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  });

  it('answers in JSON when told to', async () => {
    agent({ codec: 'json' });
    const conn = await plane.nextConnection();
    expect((await conn.next('RegisterNode')).codecByte).toBe(CODEC_JSON);
  });

  it('resends an unacked result after each reconnect, resuming with the session token, until it is acked', async () => {
    agent();
    let conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    const job = jobAssignment(['echo', 'hi']);
    conn.send('JobAssignment', job);
    await conn.next('JobResult');
    conn.drop();

    conn = await plane.nextConnection();
    const again = await conn.next('RegisterNode');
    expect(again.data.auth_token).toBe(`session-for-${nodeId}`);
    expect(again.data.resume).toEqual({ node_id: nodeId, running_jobs: [], unacked_results: [job.job_id] });
    conn.send('RegisterAck', ack(nodeId, { resumed: true }));
    const resent = await conn.next('JobResult');
    expect(resent.data).toMatchObject({ job_id: job.job_id, attempt: 1, node_id: nodeId, result: { stdout: 'hi\n' } });
    conn.send('JobResultAck', { job_id: job.job_id, attempt: 1 });
    // Anything sent after the ack was read shows the ack was processed.
    conn.send('Configure', { heartbeat_interval_ms: 50 });
    await conn.next('Heartbeat');
    conn.drop();

    conn = await plane.nextConnection();
    const third = await conn.next('RegisterNode');
    expect(third.data.resume).toEqual({ node_id: nodeId, running_jobs: [], unacked_results: [] });
    conn.send('RegisterAck', ack(nodeId, { resumed: true, heartbeat_interval_ms: 50 }));
    await conn.next('Heartbeat');
    await conn.next('Heartbeat');
    expect(conn.all('JobResult')).toEqual([]);
  });

  it('resends a result on the same connection when the plane could not store it, until it is acked', async () => {
    agent({ resultResendIntervalMs: 100 });
    const conn = await plane.nextConnection();
    await registered(conn);
    const job = jobAssignment(['echo', 'hi']);
    conn.send('JobAssignment', job);
    const first = await conn.next('JobResult');
    // What the plane answers when its store fails (a full disk): non-fatal, the connection stays.
    conn.send('Error', { code: 'internal', message: 'cannot store the result', fatal: false });
    const resent = await conn.next('JobResult');
    expect(resent.data).toEqual(first.data);
    conn.send('JobResultAck', { job_id: job.job_id, attempt: 1 });
    // Heartbeats over several resend intervals: nothing more once acked.
    conn.send('Configure', { heartbeat_interval_ms: 100 });
    for (let i = 0; i < 5; i++) await conn.next('Heartbeat');
    expect(conn.all('JobResult')).toHaveLength(2);
    expect(conn.closed).toBe(false);
  });

  it('keeps a job running while disconnected and delivers its logs and result once registered again', async () => {
    const log = logEvents();
    agent({ logger: log.logger });
    let conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    // The job runs until the test opens its gate (a FIFO), so it is still running when the agent registers again.
    const gateDir = mkdtempSync(join(os.tmpdir(), 'muster-gate-'));
    onTestFinished(() => rmSync(gateDir, { recursive: true, force: true }));
    const gate = join(gateDir, 'gate.fifo');
    execFileSync('mkfifo', [gate]);
    const job = jobAssignment(['sh', '-c', 'read go < "$0"; echo later', gate]);
    conn.send('JobAssignment', job);
    await conn.next('JobAccepted');
    conn.drop();

    conn = await plane.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.data.resume?.running_jobs).toEqual([job.job_id]);
    // Hold the RegisterAck back until the job is over, so its output had to be queued.
    const ended = log.next('job ended', { job_id: job.job_id });
    await writeFile(gate, 'go\n');
    await ended;
    expect(conn.all('LogChunk')).toEqual([]);
    conn.send('RegisterAck', ack(nodeId, { resumed: true }));
    expect((await conn.next('LogChunk')).data).toMatchObject({ job_id: job.job_id, seq: 0, data: 'later\n' });
    expect((await conn.next('JobResult')).data.result.status).toBe('Completed');
  });

  it('falls back to the registration token without resume when the session is refused', async () => {
    agent();
    let conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    await conn.next('Heartbeat');
    conn.drop();

    conn = await plane.nextConnection();
    expect((await conn.next('RegisterNode')).data.resume?.node_id).toBe(nodeId);
    conn.send('Error', { code: 'token_expired', message: 'session token expired', fatal: true });
    conn.drop();

    conn = await plane.nextConnection();
    const fresh = await conn.next('RegisterNode');
    expect(fresh.data.auth_token).toBe(TOKEN);
    expect(fresh.data.resume).toBeUndefined();
  });

  it('resumes with the session token of the last TokenRefresh', async () => {
    agent();
    let conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    await conn.next('Heartbeat');
    conn.send('TokenRefresh', { session_token: 'refreshed-session', session_expires_at: '2099-01-02T00:00:00Z' });
    // A heartbeat after the refresh: the agent has read it before the drop.
    conn.send('Configure', { heartbeat_interval_ms: 5_000 });
    await conn.next('Heartbeat');
    conn.drop();

    conn = await plane.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.data.auth_token).toBe('refreshed-session');
    expect(reg.data.resume?.node_id).toBe(nodeId);
  });

  it('registers afresh with the registration token when its session was revoked', async () => {
    agent();
    let conn = await plane.nextConnection();
    await registered(conn);
    await conn.next('Heartbeat');
    conn.drop();

    conn = await plane.nextConnection();
    expect((await conn.next('RegisterNode')).data.resume).toBeDefined();
    conn.send('Error', { code: 'token_revoked', message: 'token has been revoked', fatal: true });
    conn.drop();

    conn = await plane.nextConnection();
    const fresh = await conn.next('RegisterNode');
    expect(fresh.data.auth_token).toBe(TOKEN);
    expect(fresh.data.resume).toBeUndefined();
  });

  it('drops a saved result the plane refuses as never held by its new identity, after a refused resume; keeps one it could not store', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const warnings = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    agent({ resultResendIntervalMs: 100, logger: warnings });
    let conn = await plane.nextConnection();
    const { nodeId: oldNode } = await registered(conn);
    const job = jobAssignment(['echo', 'hi']);
    conn.send('JobAssignment', job);
    await conn.next('JobResult');
    conn.drop();

    // The resume is refused: the agent registers afresh and is given a new node id.
    conn = await plane.nextConnection();
    expect((await conn.next('RegisterNode')).data.resume?.node_id).toBe(oldNode);
    conn.send('Error', { code: 'token_revoked', message: 'token has been revoked', fatal: true });
    conn.drop();
    conn = await plane.nextConnection();
    const { nodeId: newNode } = await registered(conn);

    // A store failure about this very result keeps it: it comes again on the resend timer.
    const first = await conn.next('JobResult');
    expect(first.data).toMatchObject({ job_id: job.job_id, attempt: 1, node_id: newNode });
    expect(first.id).toBeDefined();
    conn.send('Error', { code: 'internal', message: 'cannot store the result', fatal: false }, CODEC_MSGPACK, first.id);
    const again = await conn.next('JobResult');
    expect(again.id).not.toBe(first.id);

    // What the plane answers for an attempt this node never held: the result is dropped.
    const refusal = `data.job_id: JobResult for job ${job.job_id} attempt 1, which this node does not hold`;
    conn.send('Error', { code: 'invalid_message', message: refusal, fatal: false, field: 'data.job_id' }, CODEC_MSGPACK, again.id);
    conn.send('Configure', { heartbeat_interval_ms: 100 });
    for (let i = 0; i < 5; i++) await conn.next('Heartbeat');
    expect(conn.all('JobResult')).toHaveLength(2);
    expect(readdirSync(join(workDir, '.outbox'))).toEqual([]);
    const dropped = lines.filter((l) => l.job_id === job.job_id && String(l.msg).includes('dropped'));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ level: 40, attempt: 1 });

    // Nor is it sent, or named as unacked, after the next reconnect.
    conn.drop();
    conn = await plane.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.data.resume).toEqual({ node_id: newNode, running_jobs: [], unacked_results: [] });
    conn.send('RegisterAck', ack(newNode, { resumed: true, heartbeat_interval_ms: 100 }));
    for (let i = 0; i < 3; i++) await conn.next('Heartbeat');
    expect(conn.all('JobResult')).toEqual([]);
  });

  it('connects over a Unix socket', async () => {
    const unixPlane = await FakePlane.start({ path: join(workDir, 'plane.sock') });
    try {
      agent({ urls: [unixPlane.url] });
      const conn = await unixPlane.nextConnection();
      await registered(conn);
      conn.send('JobAssignment', jobAssignment(['echo', 'over unix']));
      expect((await conn.next('JobResult')).data.result.stdout).toBe('over unix\n');
    } finally {
      await unixPlane.close();
    }
  });

  it('tries its URLs in turn when one does not answer', async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadUrl = `tcp://127.0.0.1:${(dead.address() as net.AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));
    agent({ urls: [deadUrl, plane.url] });
    const conn = await plane.nextConnection();
    expect((await conn.next('RegisterNode')).data.auth_token).toBe(TOKEN);
  });

  it('cancels a job on CancelJob and serves a LogResync from the requested seq', async () => {
    agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    const job = jobAssignment(['sh', '-c', 'echo one; sleep 0.3; echo two; sleep 30']);
    conn.send('JobAssignment', job);
    await conn.next('LogChunk');
    await conn.next('LogChunk');
    conn.send('LogResync', { job_id: job.job_id, attempt: 1, stream: 'stdout', next_seq: 1 });
    expect((await conn.next('LogChunk')).data).toMatchObject({ stream: 'stdout', seq: 1, data: 'two\n' });
    conn.send('CancelJob', { job_id: job.job_id, attempt: 1, reason: 'operator' });
    const result = await conn.next('JobResult');
    expect(result.data.result.status).toBe('Cancelled');
    expect(result.data.result.stdout).toBe('one\ntwo\n');
  });

  it('starts a newer attempt only once the earlier one, which ignores SIGTERM, has exited', async () => {
    agent({ killGraceMs: 500 });
    const conn = await plane.nextConnection();
    await registered(conn);
    const pidFile = join(workDir, 'attempt-1.pid');
    const first = jobAssignment(['sh', '-c', `trap "" TERM; echo $$ > ${pidFile}; echo one; while :; do sleep 0.05; done`]);
    conn.send('JobAssignment', first);
    await conn.next('LogChunk');
    // Attempt 2 looks for attempt 1's main process when it starts.
    const second = { ...first, attempt: 2, job: { ...first.job, command: ['sh', '-c', `kill -0 $(cat ${pidFile}) 2>/dev/null && echo overlap || echo alone`] } };
    conn.send('JobAssignment', second);
    // Answered at once, within the plane's accept timeout; started later.
    expect((await conn.next('JobAccepted')).data).toEqual({ job_id: first.job_id, attempt: 2 });
    const results = [await conn.next('JobResult'), await conn.next('JobResult')];
    expect(results.map((r) => [r.data.attempt, r.data.result.status])).toEqual([
      [1, 'Cancelled'],
      [2, 'Completed'],
    ]);
    expect(results[1]!.data.result.stdout).toBe('alone\n');
    expect(Date.parse(results[1]!.data.result.started_at)).toBeGreaterThanOrEqual(Date.parse(results[0]!.data.result.completed_at));
  });

  it('rejects a job that needs more than the host has', async () => {
    agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    const big = jobAssignment(['true']);
    big.job.resource_requirements.cpu_cores = os.cpus().length + 1;
    conn.send('JobAssignment', big);
    const rejected = await conn.next('JobRejected');
    expect(rejected.data).toMatchObject({ job_id: big.job_id, attempt: 1 });
    expect(rejected.data.reason).toMatch(/insufficient cpu/);
  });

  it('ignores bad frames and keeps working', async () => {
    agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    conn.sendRaw(CODEC_JSON, new TextEncoder().encode('{not json'));
    conn.send('JobAssignment', { ...jobAssignment(['true']), priority: 'Urgent' } as unknown as MessageData<'JobAssignment'>);
    conn.send('Configure', { heartbeat_interval_ms: 50 });
    await conn.next('Heartbeat');
    expect(conn.all('JobAccepted')).toEqual([]);
    expect(conn.closed).toBe(false);
  });

  it('refuses an oversize or invalid assignment with JobRejected and keeps the jobs sent alongside it', async () => {
    agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    const before = jobAssignment(['echo', 'before']);
    // Over the default max_frame_bytes (1 MiB) once encoded, under the default read limit.
    const big = jobAssignment(['echo', 'x'.repeat(1_200_000)]);
    const invalid = { ...jobAssignment(['true']), priority: 'Urgent' } as unknown as MessageData<'JobAssignment'>;
    const after = jobAssignment(['echo', 'after']);
    for (const job of [before, big, invalid, after]) conn.send('JobAssignment', job);
    // Answers come in any order: the big frame takes a while to arrive, the small jobs do not.
    await conn.until('two rejections and two results', () => conn.all('JobRejected').length === 2 && conn.all('JobResult').length === 2);
    const rejected = conn.all('JobRejected');
    expect(rejected[0]!.data).toMatchObject({ job_id: big.job_id, attempt: 1 });
    expect(rejected[0]!.data.reason).toMatch(/exceeds max_frame_bytes 1048576/);
    expect(rejected[1]!.data).toMatchObject({ job_id: invalid.job_id, attempt: 1 });
    expect(rejected[1]!.data.reason).toMatch(/invalid JobAssignment \(data\.priority\)/);
    expect(conn.all('JobResult').map((r) => r.data.result.stdout).sort()).toEqual(['after\n', 'before\n']);
    expect(conn.all('JobAccepted').map((a) => a.data.job_id).sort()).toEqual([before.job_id, after.job_id].sort());
    expect(conn.closed).toBe(false);
    expect(plane.conns).toHaveLength(1);
  });

  it('drains: rejects new jobs, reports Draining, finishes the running job, deregisters after the ack', async () => {
    const a = agent();
    const conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    const job = jobAssignment(['sh', '-c', 'sleep 0.3; echo done']);
    conn.send('JobAssignment', job);
    await conn.next('JobAccepted');
    const drained = a.drain();
    // The heartbeat that follows the acceptance may still say Ready; the drain's own says Draining.
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    const late = jobAssignment(['true']);
    conn.send('JobAssignment', late);
    expect((await conn.next('JobRejected')).data).toMatchObject({ job_id: late.job_id, reason: 'draining' });
    const result = await conn.next('JobResult');
    expect(result.data.result.stdout).toBe('done\n');
    conn.send('JobResultAck', { job_id: job.job_id, attempt: 1 });
    expect((await conn.next('Deregister')).data.node_id).toBe(nodeId);
    await drained;
  });

  it('takes jobs again on Undrain after the plane drained it, but not after a drain of its own', async () => {
    const a = agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    conn.send('Drain', {});
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    const refused = jobAssignment(['true']);
    conn.send('JobAssignment', refused);
    expect((await conn.next('JobRejected')).data).toMatchObject({ job_id: refused.job_id, reason: 'draining' });
    conn.send('Undrain', {});
    // It says so by a heartbeat (sent at once): the plane marks the node ready on it.
    while ((await conn.next('Heartbeat')).data.status !== 'Ready');
    const taken = jobAssignment(['true']);
    conn.send('JobAssignment', taken);
    expect((await conn.next('JobAccepted')).data.job_id).toBe(taken.job_id);
    const done = await conn.next('JobResult');
    conn.send('JobResultAck', { job_id: done.data.job_id, attempt: 1 });
    // Stopping (a signal): an Undrain does not bring it back.
    const drained = a.drain();
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    conn.send('Undrain', {});
    const late = jobAssignment(['true']);
    conn.send('JobAssignment', late);
    // With nothing running the drain ends at once: the late job is refused if it arrives before
    // the agent deregisters, and never taken either way.
    await drained;
    const answers = conn.received.map((r) => r.message).filter((m) => 'job_id' in m.data && m.data.job_id === late.job_id);
    expect(answers.every((m) => m.type === 'JobRejected')).toBe(true);
    expect(conn.received.some((r) => r.message.type === 'Deregister')).toBe(true);
  });
});
