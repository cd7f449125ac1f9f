import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAgent, type Agent, type AgentOptions } from '../../agent/agent.js';
import type { MessageData } from '../../protocol/messages.js';
import '../../transports/builtin.js';
import { CODEC_JSON, CODEC_MSGPACK, FakePlane, type PlaneConn } from './fake-plane.js';

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

function assignment(command: string[], jobId = randomUUID()): MessageData<'JobAssignment'> {
  return {
    job_id: jobId,
    attempt: 1,
    job: {
      name: 'test',
      image: '',
      command,
      environment: {},
      timeout: { secs: 60, nanos: 0 },
      resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: { workspace_id: 'w', pipeline_id: 'p', build_number: 1, git_ref: 'main', variables: {}, secrets: {} },
    priority: 'Normal',
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
    const job = assignment(['echo', 'hi']);
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
    const job = assignment(['echo', 'hi']);
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

  it('keeps a job running while disconnected and delivers its logs and result once registered again', async () => {
    agent();
    let conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    const job = assignment(['sh', '-c', 'sleep 0.5; echo later']);
    conn.send('JobAssignment', job);
    await conn.next('JobAccepted');
    conn.drop();

    conn = await plane.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.data.resume?.running_jobs).toEqual([job.job_id]);
    // Hold the RegisterAck back until the job is over, so its output had to be queued.
    await new Promise((r) => setTimeout(r, 1_000));
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

  it('connects over a Unix socket', async () => {
    const unixPlane = await FakePlane.start({ path: join(workDir, 'plane.sock') });
    try {
      agent({ urls: [unixPlane.url] });
      const conn = await unixPlane.nextConnection();
      await registered(conn);
      conn.send('JobAssignment', assignment(['echo', 'over unix']));
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
    const job = assignment(['sh', '-c', 'echo one; sleep 0.3; echo two; sleep 30']);
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

  it('rejects a job that needs more than the host has', async () => {
    agent();
    const conn = await plane.nextConnection();
    await registered(conn);
    const big = assignment(['true']);
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
    conn.send('JobAssignment', { ...assignment(['true']), priority: 'Urgent' } as unknown as MessageData<'JobAssignment'>);
    conn.send('Configure', { heartbeat_interval_ms: 50 });
    await conn.next('Heartbeat');
    expect(conn.all('JobAccepted')).toEqual([]);
    expect(conn.closed).toBe(false);
  });

  it('drains: rejects new jobs, reports Draining, finishes the running job, deregisters after the ack', async () => {
    const a = agent();
    const conn = await plane.nextConnection();
    const { nodeId } = await registered(conn);
    const job = assignment(['sh', '-c', 'sleep 0.3; echo done']);
    conn.send('JobAssignment', job);
    await conn.next('JobAccepted');
    const drained = a.drain();
    // The heartbeat that follows the acceptance may still say Ready; the drain's own says Draining.
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    const late = assignment(['true']);
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
    const refused = assignment(['true']);
    conn.send('JobAssignment', refused);
    expect((await conn.next('JobRejected')).data).toMatchObject({ job_id: refused.job_id, reason: 'draining' });
    conn.send('Undrain', {});
    // It says so by a heartbeat (sent at once): the plane marks the node ready on it.
    while ((await conn.next('Heartbeat')).data.status !== 'Ready');
    const taken = assignment(['true']);
    conn.send('JobAssignment', taken);
    expect((await conn.next('JobAccepted')).data.job_id).toBe(taken.job_id);
    const done = await conn.next('JobResult');
    conn.send('JobResultAck', { job_id: done.data.job_id, attempt: 1 });
    // Stopping (a signal): an Undrain does not bring it back.
    const drained = a.drain();
    while ((await conn.next('Heartbeat')).data.status !== 'Draining');
    conn.send('Undrain', {});
    const late = assignment(['true']);
    conn.send('JobAssignment', late);
    expect((await conn.next('JobRejected')).data).toMatchObject({ job_id: late.job_id, reason: 'draining' });
    await conn.next('Deregister');
    await drained;
  });
});
