// The JobStore contract: every store (SQLite now, NATS JetStream later) runs this same suite,
// so the scheduler and the admin API can rely on one behaviour whatever the backend.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobMetrics, JobOutcome, Priority, ResultStatus } from '../../../protocol/messages.js';
import type { JobStore, NewJob, TokenInfo } from '../../../supervisor/store/job-store.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const NODE_A = '11111111-1111-4111-8111-111111111111';
const NODE_B = '22222222-2222-4222-8222-222222222222';

export function newJob(overrides: Partial<NewJob> = {}): NewJob {
  return {
    job: {
      name: 'build',
      image: 'debian:12',
      command: ['make', 'test'],
      environment: { CI: '1' },
      timeout: { secs: 600, nanos: 0 },
      resource_requirements: { cpu_cores: 1, memory_mb: 512, disk_gb: 1 },
    },
    execution_context: {
      workspace_id: 'ws',
      pipeline_id: 'pl',
      build_number: 7,
      git_ref: 'refs/heads/main',
      variables: { V: 'x' },
      secrets: { S: 'y' },
    },
    priority: 'Normal',
    selector: { runner_type: 'docker', tags: { os: 'linux' } },
    max_attempts: 3,
    ...overrides,
  };
}

export function outcome(status: ResultStatus = 'Completed'): JobOutcome {
  return {
    status,
    exit_code: status === 'Completed' ? 0 : 1,
    stdout: 'out',
    stderr: '',
    artifacts: ['a.tar'],
    started_at: '2025-01-01T00:00:00.000Z',
    completed_at: '2025-01-01T00:00:01.000Z',
  };
}

export const METRICS: JobMetrics = { duration_ms: 1000, cpu_time_ms: 800, memory_peak_mb: 64 };

export function jobStoreContract(name: string, open: () => Promise<JobStore> | JobStore): void {
  describe(`JobStore contract: ${name}`, () => {
    let store: JobStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    /** A job submitted and assigned to NODE_A at attempt 1, optionally accepted. */
    async function assigned(job: Partial<NewJob> = {}, running = false): Promise<string> {
      const { job_id } = await store.submit(newJob(job));
      expect(await store.assign(job_id, 1, NODE_A)).toBe(true);
      if (running) expect(await store.markRunning(job_id, 1)).toBe(true);
      return job_id;
    }

    describe('submit and get', () => {
      it('stores a new job as Queued at attempt 1 with its spec intact', async () => {
        const spec = newJob({ priority: 'High', deadline: '2030-01-01T00:00:00.000Z' });
        const rec = await store.submit(spec);
        expect(rec.job_id).toMatch(UUID);
        expect(rec).toMatchObject({ ...spec, state: 'Queued', attempt: 1, cancel_requested: false });
        expect(rec.node_id).toBeUndefined();
        expect(rec.result).toBeUndefined();
        expect(rec.created_at).toMatch(UTC);
        expect(await store.get(rec.job_id)).toEqual(rec);
      });

      it('gives every job its own id and a growing seq', async () => {
        const a = await store.submit(newJob());
        const b = await store.submit(newJob());
        expect(a.job_id).not.toBe(b.job_id);
        expect(b.seq).toBeGreaterThan(a.seq);
      });

      it('answers undefined for an unknown job', async () => {
        expect(await store.get('00000000-0000-4000-8000-000000000000')).toBeUndefined();
      });
    });

    describe('queued', () => {
      it('orders Critical > High > Normal > Low, FIFO within a priority', async () => {
        const order: Priority[] = ['Low', 'Normal', 'Critical', 'High', 'Normal', 'Critical', 'Low'];
        const ids: string[] = [];
        for (const priority of order) ids.push((await store.submit(newJob({ priority }))).job_id);
        const got = (await store.queued()).map((j) => j.job_id);
        expect(got).toEqual([ids[2], ids[5], ids[3], ids[1], ids[4], ids[0], ids[6]]);
      });

      it('honours the limit and leaves out jobs that are not queued', async () => {
        const first = await assigned({ priority: 'Critical' });
        const b = await store.submit(newJob());
        const c = await store.submit(newJob());
        await store.submit(newJob());
        expect((await store.queued(2)).map((j) => j.job_id)).toEqual([b.job_id, c.job_id]);
        expect((await store.queued()).map((j) => j.job_id)).not.toContain(first);
      });
    });

    describe('active', () => {
      it('lists exactly the Assigned and Running jobs', async () => {
        const a = await assigned();
        const r = await assigned({}, true);
        const done = await assigned();
        await store.storeResult(done, 1, outcome(), METRICS);
        await store.submit(newJob());
        const got = await store.active();
        expect(got.map((j) => j.job_id).sort()).toEqual([a, r].sort());
        expect(got.find((j) => j.job_id === r)).toMatchObject({ state: 'Running', node_id: NODE_A });
      });
    });

    describe('assign and markRunning (compare-and-set)', () => {
      it('assigns a queued job once, to one node', async () => {
        const { job_id } = await store.submit(newJob());
        expect(await store.assign(job_id, 1, NODE_A)).toBe(true);
        expect(await store.assign(job_id, 1, NODE_B)).toBe(false);
        const rec = await store.get(job_id);
        expect(rec).toMatchObject({ state: 'Assigned', attempt: 1, node_id: NODE_A });
        expect(rec?.assigned_at).toMatch(UTC);
      });

      it('refuses a wrong attempt or an unknown job', async () => {
        const { job_id } = await store.submit(newJob());
        expect(await store.assign(job_id, 2, NODE_A)).toBe(false);
        expect(await store.assign('00000000-0000-4000-8000-000000000000', 1, NODE_A)).toBe(false);
        expect((await store.get(job_id))?.state).toBe('Queued');
      });

      it('marks an assigned attempt Running once', async () => {
        const { job_id } = await store.submit(newJob());
        expect(await store.markRunning(job_id, 1)).toBe(false);
        await store.assign(job_id, 1, NODE_A);
        expect(await store.markRunning(job_id, 2)).toBe(false);
        expect(await store.markRunning(job_id, 1)).toBe(true);
        expect(await store.markRunning(job_id, 1)).toBe(false);
        const rec = await store.get(job_id);
        expect(rec).toMatchObject({ state: 'Running', node_id: NODE_A });
        expect(rec?.started_at).toMatch(UTC);
      });
    });

    describe('requeue', () => {
      it('puts a withdrawn attempt back as Queued with attempt + 1 and no node', async () => {
        const id = await assigned({}, true);
        const rec = await store.requeue(id, 1, 'node dead');
        expect(rec).toMatchObject({ state: 'Queued', attempt: 2 });
        expect(rec?.node_id).toBeUndefined();
        expect(await store.assign(id, 1, NODE_B)).toBe(false);
        expect(await store.assign(id, 2, NODE_B)).toBe(true);
      });

      it('is stale for an old attempt, a queued job, or an ended job', async () => {
        const id = await assigned();
        await store.requeue(id, 1, 'rejected');
        expect(await store.requeue(id, 1, 'again')).toBeUndefined();
        expect(await store.requeue(id, 2, 'not assigned')).toBeUndefined();
        expect(await store.get(id)).toMatchObject({ state: 'Queued', attempt: 2 });
        const done = await assigned();
        await store.storeResult(done, 1, outcome(), METRICS);
        expect(await store.requeue(done, 1, 'late')).toBeUndefined();
        expect((await store.get(done))?.state).toBe('Completed');
      });

      it('keeps every attempt: which node had it and how it ended', async () => {
        const id = await assigned({}, true);
        await store.requeue(id, 1, 'node dead');
        await store.assign(id, 2, NODE_B);
        await store.markRunning(id, 2);
        await store.storeResult(id, 2, outcome('Completed'), METRICS);
        expect(await store.attempts(id)).toMatchObject([
          { job_id: id, attempt: 1, node_id: NODE_A, outcome: 'Withdrawn', reason: 'node dead' },
          { job_id: id, attempt: 2, node_id: NODE_B, outcome: 'Completed' },
        ]);
        expect(await store.attempts('00000000-0000-4000-8000-000000000000')).toEqual([]);
      });

      it('dead-letters the job once max_attempts are used up, keeping the reason', async () => {
        const id = await assigned({ max_attempts: 2 });
        await store.requeue(id, 1, 'rejected');
        await store.assign(id, 2, NODE_B);
        const rec = await store.requeue(id, 2, 'accept timeout');
        expect(rec).toMatchObject({ state: 'DeadLettered', attempt: 2, reason: 'accept timeout' });
        expect(rec?.node_id).toBeUndefined();
        expect(await store.queued()).toEqual([]);
      });

      it('ends the job as Cancelled when a cancel was requested', async () => {
        const id = await assigned({}, true);
        await store.requestCancel(id);
        const rec = await store.requeue(id, 1, 'node dead');
        expect(rec).toMatchObject({ state: 'Cancelled', attempt: 1, cancel_requested: true });
        expect(await store.queued()).toEqual([]);
      });
    });

    describe('storeResult', () => {
      it.each<ResultStatus>(['Completed', 'Failed', 'Cancelled', 'TimedOut'])(
        'stores a %s result once and takes the state from it',
        async (status) => {
          const id = await assigned({}, true);
          expect(await store.storeResult(id, 1, outcome(status), METRICS)).toBe('stored');
          const rec = await store.get(id);
          expect(rec).toMatchObject({ state: status, attempt: 1, result: outcome(status), metrics: METRICS });
          // The node that ran the attempt stays on record, so operators see where the job ran.
          expect(rec?.node_id).toBe(NODE_A);
        },
      );

      it('accepts a result straight from Assigned (the JobAccepted was lost)', async () => {
        const id = await assigned();
        expect(await store.storeResult(id, 1, outcome(), METRICS)).toBe('stored');
      });

      it('calls a repeat of a stored result a duplicate and changes nothing', async () => {
        const id = await assigned({}, true);
        await store.storeResult(id, 1, outcome('Failed'), METRICS);
        const before = await store.get(id);
        expect(await store.storeResult(id, 1, outcome('Completed'), METRICS)).toBe('duplicate');
        expect(await store.get(id)).toEqual(before);
      });

      it('is stale for an attempt that was requeued, and keeps the current one', async () => {
        const id = await assigned({}, true);
        await store.requeue(id, 1, 'node dead');
        expect(await store.storeResult(id, 1, outcome(), METRICS)).toBe('stale');
        expect(await store.get(id)).toMatchObject({ state: 'Queued', attempt: 2 });
        expect((await store.get(id))?.result).toBeUndefined();
        await store.assign(id, 2, NODE_B);
        expect(await store.storeResult(id, 2, outcome(), METRICS)).toBe('stored');
      });

      it('is stale for a queued, finished, dead-lettered or unknown job', async () => {
        const { job_id: queued } = await store.submit(newJob());
        expect(await store.storeResult(queued, 1, outcome(), METRICS)).toBe('stale');
        const timedOut = await assigned({}, true);
        await store.finish(timedOut, 1, 'TimedOut', 'deadline passed');
        expect(await store.storeResult(timedOut, 1, outcome(), METRICS)).toBe('stale');
        expect(await store.get(timedOut)).toMatchObject({ state: 'TimedOut', reason: 'deadline passed' });
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'rejected');
        expect(await store.storeResult(dead, 1, outcome(), METRICS)).toBe('stale');
        expect(await store.storeResult('00000000-0000-4000-8000-000000000000', 1, outcome(), METRICS)).toBe('stale');
      });
    });

    describe('finish', () => {
      it('ends a running job without a result', async () => {
        const id = await assigned({}, true);
        expect(await store.finish(id, 1, 'TimedOut', 'timeout 600s')).toBe(true);
        const rec = await store.get(id);
        expect(rec).toMatchObject({ state: 'TimedOut', reason: 'timeout 600s' });
        expect(rec?.node_id).toBe(NODE_A);
        expect(rec?.result).toBeUndefined();
        expect(await store.active()).toEqual([]);
      });

      it('ends a queued job at its current attempt', async () => {
        const { job_id } = await store.submit(newJob());
        expect(await store.finish(job_id, 1, 'TimedOut', 'deadline passed')).toBe(true);
        expect((await store.get(job_id))?.state).toBe('TimedOut');
      });

      it('is false for a stale attempt or an ended job', async () => {
        const id = await assigned();
        await store.requeue(id, 1, 'rejected');
        expect(await store.finish(id, 1, 'Cancelled', 'x')).toBe(false);
        const done = await assigned({}, true);
        await store.storeResult(done, 1, outcome(), METRICS);
        expect(await store.finish(done, 1, 'Cancelled', 'x')).toBe(false);
        expect((await store.get(done))?.state).toBe('Completed');
      });
    });

    describe('requestCancel', () => {
      it('cancels a queued job at once', async () => {
        const { job_id } = await store.submit(newJob());
        const rec = await store.requestCancel(job_id);
        expect(rec).toMatchObject({ state: 'Cancelled', cancel_requested: true });
        expect(await store.queued()).toEqual([]);
        expect(await store.assign(job_id, 1, NODE_A)).toBe(false);
      });

      it('only flags an assigned or running job; its result still ends it', async () => {
        const id = await assigned({}, true);
        expect(await store.requestCancel(id)).toMatchObject({ state: 'Running', cancel_requested: true, node_id: NODE_A });
        expect(await store.storeResult(id, 1, outcome('Cancelled'), METRICS)).toBe('stored');
        expect((await store.get(id))?.state).toBe('Cancelled');
      });

      it('leaves an ended job as it was, and knows no unknown job', async () => {
        const id = await assigned({}, true);
        await store.storeResult(id, 1, outcome(), METRICS);
        const before = await store.get(id);
        expect(await store.requestCancel(id)).toEqual(before);
        expect(await store.requestCancel('00000000-0000-4000-8000-000000000000')).toBeUndefined();
      });
    });

    describe('appendLog and logs', () => {
      it('stores chunks in order and drops repeats', async () => {
        const id = await assigned({}, true);
        expect(await store.appendLog(id, 1, 'stdout', 0, 'a')).toEqual({ status: 'stored' });
        expect(await store.appendLog(id, 1, 'stdout', 1, 'b')).toEqual({ status: 'stored' });
        expect(await store.appendLog(id, 1, 'stdout', 0, 'a')).toEqual({ status: 'duplicate' });
        expect(await store.appendLog(id, 1, 'stdout', 1, 'B')).toEqual({ status: 'duplicate' });
        expect((await store.logs(id)).map((l) => l.data)).toEqual(['a', 'b']);
      });

      it('reports a gap with the seq to resend from', async () => {
        const id = await assigned({}, true);
        expect(await store.appendLog(id, 1, 'stdout', 1, 'early')).toEqual({ status: 'gap', nextSeq: 0 });
        await store.appendLog(id, 1, 'stdout', 0, 'a');
        await store.appendLog(id, 1, 'stdout', 1, 'b');
        expect(await store.appendLog(id, 1, 'stdout', 4, 'e')).toEqual({ status: 'gap', nextSeq: 2 });
        expect((await store.logs(id)).map((l) => l.seq)).toEqual([0, 1]);
      });

      it('counts seq per attempt and per stream', async () => {
        const id = await assigned({}, true);
        await store.appendLog(id, 1, 'stdout', 0, 'o1');
        expect(await store.appendLog(id, 1, 'stderr', 0, 'e1')).toEqual({ status: 'stored' });
        await store.requeue(id, 1, 'node dead');
        await store.assign(id, 2, NODE_B);
        expect(await store.appendLog(id, 2, 'stdout', 0, 'o2')).toEqual({ status: 'stored' });
        const logs = await store.logs(id);
        expect(logs.map(({ attempt, stream, seq, data }) => ({ attempt, stream, seq, data }))).toEqual([
          { attempt: 1, stream: 'stdout', seq: 0, data: 'o1' },
          { attempt: 1, stream: 'stderr', seq: 0, data: 'e1' },
          { attempt: 2, stream: 'stdout', seq: 0, data: 'o2' },
        ]);
      });

      it('returns chunks by cursor, after a given cursor, for that job only', async () => {
        const a = await assigned({}, true);
        const b = await assigned({}, true);
        await store.appendLog(a, 1, 'stdout', 0, 'a0');
        await store.appendLog(b, 1, 'stdout', 0, 'b0');
        await store.appendLog(a, 1, 'stderr', 0, 'a1');
        await store.appendLog(a, 1, 'stdout', 1, 'a2');
        const all = await store.logs(a);
        expect(all.map((l) => l.data)).toEqual(['a0', 'a1', 'a2']);
        const cursors = all.map((l) => l.cursor);
        expect([...cursors].sort((x, y) => x - y)).toEqual(cursors);
        expect(new Set(cursors).size).toBe(3);
        expect((await store.logs(a, all[0]!.cursor)).map((l) => l.data)).toEqual(['a1', 'a2']);
        expect(await store.logs(a, all[2]!.cursor)).toEqual([]);
        expect(await store.logs('00000000-0000-4000-8000-000000000000')).toEqual([]);
      });
    });

    describe('counts', () => {
      it('has every state, zeros included', async () => {
        expect(await store.counts()).toEqual({
          Queued: 0,
          Assigned: 0,
          Running: 0,
          Completed: 0,
          Failed: 0,
          Cancelled: 0,
          TimedOut: 0,
          DeadLettered: 0,
        });
      });

      it('counts jobs by their current state', async () => {
        await store.submit(newJob());
        await store.submit(newJob());
        await assigned();
        await assigned({}, true);
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS);
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'rejected');
        const requeued = await assigned();
        await store.requeue(requeued, 1, 'rejected');
        expect(await store.counts()).toEqual({
          Queued: 3,
          Assigned: 1,
          Running: 1,
          Completed: 0,
          Failed: 1,
          Cancelled: 0,
          TimedOut: 0,
          DeadLettered: 1,
        });
      });
    });

    describe('tokens and revocations', () => {
      const JTI_A = 'aaaaaaaa-0000-4000-8000-000000000001';
      const JTI_B = 'bbbbbbbb-0000-4000-8000-000000000002';
      const JTI_C = 'cccccccc-0000-4000-8000-000000000003';

      function token(jti: string, overrides: Partial<TokenInfo> = {}): TokenInfo {
        return {
          jti,
          role: 'node',
          sub: 'runner-1',
          node_type: 'linux',
          issued_at: '2030-01-01T00:00:00.000Z',
          expires_at: '2030-01-01T01:00:00.000Z',
          ...overrides,
        };
      }

      it('records minted tokens and lists them oldest first, without revocation fields', async () => {
        const api = token(JTI_B, { role: 'admin', sub: 'alice', issued_at: '2030-01-01T00:00:05.000Z' });
        delete api.node_type;
        const session = token(JTI_C, { role: 'session', issued_at: '2030-01-01T00:00:09.000Z' });
        delete session.node_type;
        await store.recordToken(token(JTI_A));
        await store.recordToken(api);
        await store.recordToken(session);
        expect(await store.listTokens()).toEqual([token(JTI_A), api, session]);
      });

      it('records a jti once: a second record changes nothing', async () => {
        await store.recordToken(token(JTI_A));
        await store.recordToken(token(JTI_A, { role: 'admin', sub: 'mallory' }));
        expect(await store.listTokens()).toEqual([token(JTI_A)]);
      });

      it('revokes a recorded token once, and lists it as revoked', async () => {
        await store.recordToken(token(JTI_A));
        await store.recordToken(token(JTI_B));
        expect(await store.isRevoked(JTI_A)).toBe(false);
        const first = await store.revokeToken(JTI_A, 'laptop stolen');
        expect(first).toMatchObject({ jti: JTI_A, reason: 'laptop stolen', expires_at: token(JTI_A).expires_at });
        expect(first.revoked_at).toMatch(UTC);
        expect(await store.revokeToken(JTI_A, 'again')).toEqual(first);
        expect(await store.isRevoked(JTI_A)).toBe(true);
        expect(await store.isRevoked(JTI_B)).toBe(false);
        const [a, b] = await store.listTokens();
        expect(a).toEqual({ ...token(JTI_A), revoked_at: first.revoked_at, revoke_reason: 'laptop stolen' });
        expect(b).toEqual(token(JTI_B));
      });

      it('revokes a jti it never recorded (a token minted elsewhere)', async () => {
        const revocation = await store.revokeToken(JTI_C, 'external');
        expect(revocation.expires_at).toBeUndefined();
        expect(await store.isRevoked(JTI_C)).toBe(true);
        expect(await store.listTokens()).toEqual([]);
      });

      it('hands out revocations in order after a cursor', async () => {
        const a = await store.revokeToken(JTI_A, 'one');
        const b = await store.revokeToken(JTI_B, 'two');
        expect(b.seq).toBeGreaterThan(a.seq);
        expect((await store.revokedSince(0)).map((r) => r.jti)).toEqual([JTI_A, JTI_B]);
        expect(await store.revokedSince(a.seq)).toEqual([b]);
        expect(await store.revokedSince(b.seq)).toEqual([]);
        await store.revokeToken(JTI_A, 'repeat');
        expect(await store.revokedSince(b.seq)).toEqual([]);
      });

      it('prunes expired tokens and their revocations, keeps the rest, and never reuses a seq', async () => {
        await store.recordToken(token(JTI_A, { expires_at: '2030-01-01T00:30:00.000Z' }));
        await store.recordToken(token(JTI_B, { expires_at: '2030-01-02T00:00:00.000Z' }));
        const old = await store.revokeToken(JTI_A, 'old');
        await store.revokeToken(JTI_C, 'unrecorded');
        expect(await store.pruneTokens('2030-01-01T12:00:00.000Z')).toBe(2);
        expect((await store.listTokens()).map((t) => t.jti)).toEqual([JTI_B]);
        expect(await store.isRevoked(JTI_A)).toBe(false);
        expect(await store.isRevoked(JTI_C)).toBe(true);
        const newest = (await store.revokedSince(0)).at(-1);
        const next = await store.revokeToken(JTI_B, 'new');
        expect(next.seq).toBeGreaterThan(Math.max(old.seq, newest?.seq ?? 0));
      });
    });

    describe('pipelines: submitMany, listJobs, retry', () => {
      it('stores a batch in order, each Queued at attempt 1 with its own id and a growing seq', async () => {
        const specs = [newJob({ priority: 'Low' }), newJob({ priority: 'Critical' }), newJob({ max_attempts: 1 })];
        const records = await store.submitMany(specs);
        expect(records).toHaveLength(3);
        records.forEach((rec, i) => {
          expect(rec).toMatchObject({ ...specs[i], state: 'Queued', attempt: 1, cancel_requested: false });
          expect(rec.job_id).toMatch(UUID);
        });
        expect(records[1]!.seq).toBeGreaterThan(records[0]!.seq);
        expect(records[2]!.seq).toBeGreaterThan(records[1]!.seq);
        for (const rec of records) expect(await store.get(rec.job_id)).toEqual(rec);
        expect(await store.submitMany([])).toEqual([]);
      });

      it('lists newest first, filtered by state, node and priority', async () => {
        const low = await store.submit(newJob({ priority: 'Low' }));
        const onA = await assigned({ priority: 'High' });
        const high = await store.submit(newJob({ priority: 'High' }));
        const ids = async (filter: Parameters<JobStore['listJobs']>[0], limit = 10): Promise<string[]> =>
          (await store.listJobs(filter, limit)).map((j) => j.job_id);
        expect(await ids({})).toEqual([high.job_id, onA, low.job_id]);
        expect(await ids({ state: 'Queued' })).toEqual([high.job_id, low.job_id]);
        expect(await ids({ state: 'Assigned' })).toEqual([onA]);
        expect(await ids({ node_id: NODE_A })).toEqual([onA]);
        expect(await ids({ node_id: NODE_B })).toEqual([]);
        expect(await ids({ priority: 'High' })).toEqual([high.job_id, onA]);
        expect(await ids({ priority: 'High', state: 'Queued' })).toEqual([high.job_id]);
        expect(await ids({}, 2)).toEqual([high.job_id, onA]);
        expect(await ids({ before_seq: high.seq })).toEqual([onA, low.job_id]);
        expect(await ids({ before_seq: low.seq })).toEqual([]);
        expect((await store.listJobs({ state: 'Assigned' }, 10))[0]).toEqual(await store.get(onA));
      });

      it('pages through every job once while jobs are submitted between pages', async () => {
        const before = (await store.submitMany(Array.from({ length: 25 }, () => newJob()))).map((j) => j.job_id);
        const seen: string[] = [];
        let cursor: number | undefined;
        for (;;) {
          const page = await store.listJobs(cursor === undefined ? {} : { before_seq: cursor }, 7);
          seen.push(...page.map((j) => j.job_id));
          if (page.length < 7) break;
          cursor = page.at(-1)!.seq;
          await store.submit(newJob());
        }
        expect(seen).toEqual([...before].reverse());
      });

      it('retries a job that ended Failed, TimedOut, Cancelled or DeadLettered as its next attempt', async () => {
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS);
        const timedOut = await assigned({}, true);
        await store.finish(timedOut, 1, 'TimedOut', 'deadline');
        const cancelled = (await store.submit(newJob())).job_id;
        await store.requestCancel(cancelled);
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'node dead');
        for (const id of [failed, timedOut, cancelled, dead]) {
          const before = await store.get(id);
          const again = await store.retry(id, 1);
          expect(again, `${before?.state}`).toMatchObject({ job_id: id, state: 'Queued', attempt: 2, cancel_requested: false });
          expect(again?.node_id).toBeUndefined();
          expect(again?.result).toBeUndefined();
          expect(again?.reason).toBeUndefined();
          expect(await store.get(id)).toEqual(again);
          expect((await store.queued()).map((j) => j.job_id)).toContain(id);
        }
        // The new attempt runs like any other; the failed one's result stays with attempt 1.
        expect(await store.assign(failed, 2, NODE_B)).toBe(true);
        expect((await store.attempts(failed)).map((a) => [a.attempt, a.node_id, a.outcome])).toEqual([
          [1, NODE_A, 'Failed'],
          [2, NODE_B, undefined],
        ]);
      });

      it('refuses to retry a job that is queued, running or Completed, or at another attempt', async () => {
        const queued = (await store.submit(newJob())).job_id;
        const running = await assigned({}, true);
        const done = await assigned({}, true);
        await store.storeResult(done, 1, outcome(), METRICS);
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS);
        expect(await store.retry(queued, 1)).toBeUndefined();
        expect(await store.retry(running, 1)).toBeUndefined();
        expect(await store.retry(done, 1)).toBeUndefined();
        expect(await store.retry(failed, 2)).toBeUndefined();
        expect(await store.retry('00000000-0000-4000-8000-000000000000', 1)).toBeUndefined();
        expect((await store.get(running))?.state).toBe('Running');
        expect((await store.get(failed))?.state).toBe('Failed');
        // A second retry of the same end loses the compare-and-set.
        expect(await store.retry(failed, 1)).toBeDefined();
        expect(await store.retry(failed, 1)).toBeUndefined();
      });
    });
  });
}
