// The JobStore contract: every store (SQLite now, NATS JetStream later) runs this same suite,
// so the scheduler and the admin API can rely on one behaviour whatever the backend.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lifecycleOf, nextJobState, type JobEvent } from '../../../actors/job-machine.js';
import { MusterError } from '../../../protocol/errors.js';
import type { JobMetrics, JobOutcome, Priority, ResultStatus } from '../../../protocol/messages.js';
import type { JobStore, NewJob } from '../../../supervisor/store/job-store.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const NODE_A = '11111111-1111-4111-8111-111111111111';
const NODE_B = '22222222-2222-4222-8222-222222222222';
/** The owner token of the suite's writes; fencing tests use others around it. */
export const OWNER = 5;

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
      const { job_id } = await store.submit(newJob(job), OWNER);
      expect(await store.assign(job_id, 1, NODE_A, OWNER)).toBe(true);
      if (running) expect(await store.markRunning(job_id, 1, OWNER)).toBe(true);
      return job_id;
    }

    describe('submit and get', () => {
      it('stores a new job as Queued at attempt 1 with its spec intact, secret values apart', async () => {
        const spec = newJob({ priority: 'High', deadline: '2030-01-01T00:00:00.000Z' });
        const rec = await store.submit(spec, OWNER);
        expect(rec.job_id).toMatch(UUID);
        // Records keep each secret's name, never its value (secrets() opens them for an assignment).
        const shown = { ...spec.execution_context, secrets: { S: '***' } };
        expect(rec).toMatchObject({ ...spec, execution_context: shown, state: 'Queued', attempt: 1, cancel_requested: false });
        expect(rec.node_id).toBeUndefined();
        expect(rec.result).toBeUndefined();
        expect(rec.created_at).toMatch(UTC);
        expect(await store.get(rec.job_id)).toEqual(rec);
      });

      it('gives the secret values of a job only through secrets()', async () => {
        const secrets = { DEPLOY_TOKEN: 'hunter2', OTHER: 'é ✓ "quoted"' };
        const { job_id } = await store.submit(newJob({ execution_context: { ...newJob().execution_context, secrets } }), OWNER);
        expect(await store.secrets(job_id)).toEqual(secrets);
        expect(JSON.stringify(await store.get(job_id))).not.toContain('hunter2');
        expect(JSON.stringify(await store.queued())).not.toContain('hunter2');
        const none = await store.submit(newJob({ execution_context: { ...newJob().execution_context, secrets: {} } }), OWNER);
        expect(await store.secrets(none.job_id)).toEqual({});
        expect(await store.secrets('00000000-0000-4000-8000-000000000000')).toBeUndefined();
      });

      it('gives every job its own id and a growing seq', async () => {
        const a = await store.submit(newJob(), OWNER);
        const b = await store.submit(newJob(), OWNER);
        expect(a.job_id).not.toBe(b.job_id);
        expect(b.seq).toBeGreaterThan(a.seq);
      });

      it('keeps the trace context a job was submitted in through its attempts, a retry and a batch', async () => {
        const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        const { job_id } = await store.submit(newJob({ traceparent, max_attempts: 1 }), OWNER);
        expect(await store.assign(job_id, 1, NODE_A, OWNER)).toBe(true);
        expect(await store.requeue(job_id, 1, 'node died', OWNER)).toMatchObject({ state: 'DeadLettered', traceparent });
        expect(await store.retry(job_id, 1, OWNER)).toMatchObject({ state: 'Queued', attempt: 2, traceparent });
        expect((await store.get(job_id))?.traceparent).toBe(traceparent);
        const other = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
        const batch = await store.submitMany([newJob({ traceparent: other }), newJob()], OWNER);
        expect((await store.get(batch[0]!.job_id))?.traceparent).toBe(other);
        // A job submitted without one has none (not an empty or null field).
        expect(await store.get(batch[1]!.job_id)).not.toHaveProperty('traceparent');
      });

      it('answers undefined for an unknown job', async () => {
        expect(await store.get('00000000-0000-4000-8000-000000000000')).toBeUndefined();
      });
    });

    describe('queued', () => {
      it('orders Critical > High > Normal > Low, FIFO within a priority', async () => {
        const order: Priority[] = ['Low', 'Normal', 'Critical', 'High', 'Normal', 'Critical', 'Low'];
        const ids: string[] = [];
        for (const priority of order) ids.push((await store.submit(newJob({ priority }), OWNER)).job_id);
        const got = (await store.queued()).map((j) => j.job_id);
        expect(got).toEqual([ids[2], ids[5], ids[3], ids[1], ids[4], ids[0], ids[6]]);
      });

      it('honours the limit and leaves out jobs that are not queued', async () => {
        const first = await assigned({ priority: 'Critical' });
        const b = await store.submit(newJob(), OWNER);
        const c = await store.submit(newJob(), OWNER);
        await store.submit(newJob(), OWNER);
        expect((await store.queued(2)).map((j) => j.job_id)).toEqual([b.job_id, c.job_id]);
        expect((await store.queued()).map((j) => j.job_id)).not.toContain(first);
      });
    });

    describe('active', () => {
      it('lists exactly the Assigned and Running jobs', async () => {
        const a = await assigned();
        const r = await assigned({}, true);
        const done = await assigned();
        await store.storeResult(done, 1, outcome(), METRICS, OWNER);
        await store.submit(newJob(), OWNER);
        const got = await store.active();
        expect(got.map((j) => j.job_id).sort()).toEqual([a, r].sort());
        expect(got.find((j) => j.job_id === r)).toMatchObject({ state: 'Running', node_id: NODE_A });
      });
    });

    describe('assign and markRunning (compare-and-set)', () => {
      it('assigns a queued job once, to one node', async () => {
        const { job_id } = await store.submit(newJob(), OWNER);
        expect(await store.assign(job_id, 1, NODE_A, OWNER)).toBe(true);
        expect(await store.assign(job_id, 1, NODE_B, OWNER)).toBe(false);
        const rec = await store.get(job_id);
        expect(rec).toMatchObject({ state: 'Assigned', attempt: 1, node_id: NODE_A });
        expect(rec?.assigned_at).toMatch(UTC);
      });

      it('refuses a wrong attempt or an unknown job', async () => {
        const { job_id } = await store.submit(newJob(), OWNER);
        expect(await store.assign(job_id, 2, NODE_A, OWNER)).toBe(false);
        expect(await store.assign('00000000-0000-4000-8000-000000000000', 1, NODE_A, OWNER)).toBe(false);
        expect((await store.get(job_id))?.state).toBe('Queued');
      });

      it('marks an assigned attempt Running once', async () => {
        const { job_id } = await store.submit(newJob(), OWNER);
        expect(await store.markRunning(job_id, 1, OWNER)).toBe(false);
        await store.assign(job_id, 1, NODE_A, OWNER);
        expect(await store.markRunning(job_id, 2, OWNER)).toBe(false);
        expect(await store.markRunning(job_id, 1, OWNER)).toBe(true);
        expect(await store.markRunning(job_id, 1, OWNER)).toBe(false);
        const rec = await store.get(job_id);
        expect(rec).toMatchObject({ state: 'Running', node_id: NODE_A });
        expect(rec?.started_at).toMatch(UTC);
      });
    });

    describe('requeue', () => {
      it('puts a withdrawn attempt back as Queued with attempt + 1 and no node', async () => {
        const id = await assigned({}, true);
        const rec = await store.requeue(id, 1, 'node dead', OWNER);
        expect(rec).toMatchObject({ state: 'Queued', attempt: 2 });
        expect(rec?.node_id).toBeUndefined();
        expect(await store.assign(id, 1, NODE_B, OWNER)).toBe(false);
        expect(await store.assign(id, 2, NODE_B, OWNER)).toBe(true);
      });

      it('is stale for an old attempt, a queued job, or an ended job', async () => {
        const id = await assigned();
        await store.requeue(id, 1, 'rejected', OWNER);
        expect(await store.requeue(id, 1, 'again', OWNER)).toBeUndefined();
        expect(await store.requeue(id, 2, 'not assigned', OWNER)).toBeUndefined();
        expect(await store.get(id)).toMatchObject({ state: 'Queued', attempt: 2 });
        const done = await assigned();
        await store.storeResult(done, 1, outcome(), METRICS, OWNER);
        expect(await store.requeue(done, 1, 'late', OWNER)).toBeUndefined();
        expect((await store.get(done))?.state).toBe('Completed');
      });

      it('keeps every attempt: which node had it and how it ended', async () => {
        const id = await assigned({}, true);
        await store.requeue(id, 1, 'node dead', OWNER);
        await store.assign(id, 2, NODE_B, OWNER);
        await store.markRunning(id, 2, OWNER);
        await store.storeResult(id, 2, outcome('Completed'), METRICS, OWNER);
        expect(await store.attempts(id)).toMatchObject([
          { job_id: id, attempt: 1, node_id: NODE_A, outcome: 'Withdrawn', reason: 'node dead' },
          { job_id: id, attempt: 2, node_id: NODE_B, outcome: 'Completed' },
        ]);
        expect(await store.attempts('00000000-0000-4000-8000-000000000000')).toEqual([]);
      });

      it('dead-letters the job once max_attempts are used up, keeping the reason', async () => {
        const id = await assigned({ max_attempts: 2 });
        await store.requeue(id, 1, 'rejected', OWNER);
        await store.assign(id, 2, NODE_B, OWNER);
        const rec = await store.requeue(id, 2, 'accept timeout', OWNER);
        expect(rec).toMatchObject({ state: 'DeadLettered', attempt: 2, reason: 'accept timeout' });
        expect(rec?.node_id).toBeUndefined();
        expect(await store.queued()).toEqual([]);
      });

      it('ends the job as Cancelled when a cancel was requested', async () => {
        const id = await assigned({}, true);
        await store.requestCancel(id, OWNER);
        const rec = await store.requeue(id, 1, 'node dead', OWNER);
        expect(rec).toMatchObject({ state: 'Cancelled', attempt: 1, cancel_requested: true });
        expect(await store.queued()).toEqual([]);
      });
    });

    describe('storeResult', () => {
      it.each<ResultStatus>(['Completed', 'Failed', 'Cancelled', 'TimedOut'])(
        'stores a %s result once and takes the state from it',
        async (status) => {
          const id = await assigned({}, true);
          expect(await store.storeResult(id, 1, outcome(status), METRICS, OWNER)).toBe('stored');
          const rec = await store.get(id);
          expect(rec).toMatchObject({ state: status, attempt: 1, result: outcome(status), metrics: METRICS });
          // The node that ran the attempt stays on record, so operators see where the job ran.
          expect(rec?.node_id).toBe(NODE_A);
        },
      );

      it('accepts a result straight from Assigned (the JobAccepted was lost)', async () => {
        const id = await assigned();
        expect(await store.storeResult(id, 1, outcome(), METRICS, OWNER)).toBe('stored');
      });

      it('calls a repeat of a stored result a duplicate and changes nothing', async () => {
        const id = await assigned({}, true);
        await store.storeResult(id, 1, outcome('Failed'), METRICS, OWNER);
        const before = await store.get(id);
        expect(await store.storeResult(id, 1, outcome('Completed'), METRICS, OWNER)).toBe('duplicate');
        expect(await store.get(id)).toEqual(before);
      });

      it('is stale for an attempt that was requeued, and keeps the current one', async () => {
        const id = await assigned({}, true);
        await store.requeue(id, 1, 'node dead', OWNER);
        expect(await store.storeResult(id, 1, outcome(), METRICS, OWNER)).toBe('stale');
        expect(await store.get(id)).toMatchObject({ state: 'Queued', attempt: 2 });
        expect((await store.get(id))?.result).toBeUndefined();
        await store.assign(id, 2, NODE_B, OWNER);
        expect(await store.storeResult(id, 2, outcome(), METRICS, OWNER)).toBe('stored');
      });

      it('is stale for a queued, finished, dead-lettered or unknown job', async () => {
        const { job_id: queued } = await store.submit(newJob(), OWNER);
        expect(await store.storeResult(queued, 1, outcome(), METRICS, OWNER)).toBe('stale');
        const timedOut = await assigned({}, true);
        await store.finish(timedOut, 1, 'TimedOut', 'deadline passed', OWNER);
        expect(await store.storeResult(timedOut, 1, outcome(), METRICS, OWNER)).toBe('stale');
        expect(await store.get(timedOut)).toMatchObject({ state: 'TimedOut', reason: 'deadline passed' });
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'rejected', OWNER);
        expect(await store.storeResult(dead, 1, outcome(), METRICS, OWNER)).toBe('stale');
        expect(await store.storeResult('00000000-0000-4000-8000-000000000000', 1, outcome(), METRICS, OWNER)).toBe('stale');
      });
    });

    describe('finish', () => {
      it('ends a running job without a result', async () => {
        const id = await assigned({}, true);
        expect(await store.finish(id, 1, 'TimedOut', 'timeout 600s', OWNER)).toBe(true);
        const rec = await store.get(id);
        expect(rec).toMatchObject({ state: 'TimedOut', reason: 'timeout 600s' });
        expect(rec?.node_id).toBe(NODE_A);
        expect(rec?.result).toBeUndefined();
        expect(await store.active()).toEqual([]);
      });

      it('ends a queued job at its current attempt', async () => {
        const { job_id } = await store.submit(newJob(), OWNER);
        expect(await store.finish(job_id, 1, 'TimedOut', 'deadline passed', OWNER)).toBe(true);
        expect((await store.get(job_id))?.state).toBe('TimedOut');
      });

      it('is false for a stale attempt or an ended job', async () => {
        const id = await assigned();
        await store.requeue(id, 1, 'rejected', OWNER);
        expect(await store.finish(id, 1, 'Cancelled', 'x', OWNER)).toBe(false);
        const done = await assigned({}, true);
        await store.storeResult(done, 1, outcome(), METRICS, OWNER);
        expect(await store.finish(done, 1, 'Cancelled', 'x', OWNER)).toBe(false);
        expect((await store.get(done))?.state).toBe('Completed');
      });
    });

    describe('requestCancel', () => {
      it('cancels a queued job at once', async () => {
        const { job_id } = await store.submit(newJob(), OWNER);
        const rec = await store.requestCancel(job_id, OWNER);
        expect(rec).toMatchObject({ state: 'Cancelled', cancel_requested: true });
        expect(await store.queued()).toEqual([]);
        expect(await store.assign(job_id, 1, NODE_A, OWNER)).toBe(false);
      });

      it('only flags an assigned or running job; its result still ends it', async () => {
        const id = await assigned({}, true);
        expect(await store.requestCancel(id, OWNER)).toMatchObject({ state: 'Running', cancel_requested: true, node_id: NODE_A });
        expect(await store.storeResult(id, 1, outcome('Cancelled'), METRICS, OWNER)).toBe('stored');
        expect((await store.get(id))?.state).toBe('Cancelled');
      });

      it('leaves an ended job as it was, and knows no unknown job', async () => {
        const id = await assigned({}, true);
        await store.storeResult(id, 1, outcome(), METRICS, OWNER);
        const before = await store.get(id);
        expect(await store.requestCancel(id, OWNER)).toEqual(before);
        expect(await store.requestCancel('00000000-0000-4000-8000-000000000000', OWNER)).toBeUndefined();
      });
    });

    describe('appendLog and logs', () => {
      it('stores chunks in order and drops repeats', async () => {
        const id = await assigned({}, true);
        expect(await store.appendLog(id, 1, 'stdout', 0, 'a', OWNER)).toEqual({ status: 'stored' });
        expect(await store.appendLog(id, 1, 'stdout', 1, 'b', OWNER)).toEqual({ status: 'stored' });
        expect(await store.appendLog(id, 1, 'stdout', 0, 'a', OWNER)).toEqual({ status: 'duplicate' });
        expect(await store.appendLog(id, 1, 'stdout', 1, 'B', OWNER)).toEqual({ status: 'duplicate' });
        expect((await store.logs(id)).map((l) => l.data)).toEqual(['a', 'b']);
      });

      it('reports a gap with the seq to resend from', async () => {
        const id = await assigned({}, true);
        expect(await store.appendLog(id, 1, 'stdout', 1, 'early', OWNER)).toEqual({ status: 'gap', nextSeq: 0 });
        await store.appendLog(id, 1, 'stdout', 0, 'a', OWNER);
        await store.appendLog(id, 1, 'stdout', 1, 'b', OWNER);
        expect(await store.appendLog(id, 1, 'stdout', 4, 'e', OWNER)).toEqual({ status: 'gap', nextSeq: 2 });
        expect((await store.logs(id)).map((l) => l.seq)).toEqual([0, 1]);
      });

      it('counts seq per attempt and per stream', async () => {
        const id = await assigned({}, true);
        await store.appendLog(id, 1, 'stdout', 0, 'o1', OWNER);
        expect(await store.appendLog(id, 1, 'stderr', 0, 'e1', OWNER)).toEqual({ status: 'stored' });
        await store.requeue(id, 1, 'node dead', OWNER);
        await store.assign(id, 2, NODE_B, OWNER);
        expect(await store.appendLog(id, 2, 'stdout', 0, 'o2', OWNER)).toEqual({ status: 'stored' });
        const logs = await store.logs(id);
        expect(logs.map(({ attempt, stream, seq, data }) => ({ attempt, stream, seq, data }))).toEqual([
          { attempt: 1, stream: 'stdout', seq: 0, data: 'o1' },
          { attempt: 1, stream: 'stderr', seq: 0, data: 'e1' },
          { attempt: 2, stream: 'stdout', seq: 0, data: 'o2' },
        ]);
      });

      it('stores a result only after the chunks asked for before it: whoever sees the job ended can read its output', async () => {
        const id = await assigned({}, true);
        // A node's last chunk and its result come in one read, and the plane asks for both at once.
        const chunk = store.appendLog(id, 1, 'stdout', 0, 'last words', OWNER);
        expect(await store.storeResult(id, 1, outcome(), METRICS, OWNER)).toBe('stored');
        // `chunk` not awaited: the result's answer alone must mean the chunk is stored.
        expect((await store.logs(id)).map((l) => l.data)).toEqual(['last words']);
        expect(await chunk).toEqual({ status: 'stored' });
      });

      it('returns chunks by cursor, after a given cursor, for that job only', async () => {
        const a = await assigned({}, true);
        const b = await assigned({}, true);
        await store.appendLog(a, 1, 'stdout', 0, 'a0', OWNER);
        await store.appendLog(b, 1, 'stdout', 0, 'b0', OWNER);
        await store.appendLog(a, 1, 'stderr', 0, 'a1', OWNER);
        await store.appendLog(a, 1, 'stdout', 1, 'a2', OWNER);
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

    describe('owner tokens (fencing)', () => {
      /** Every write for the job's current attempt 1 that a node's owner makes, written with `owner`. */
      function attemptWrites(jobId: string, owner: number): Array<[string, () => Promise<unknown>]> {
        return [
          ['markRunning', () => store.markRunning(jobId, 1, owner)],
          ['requeue', () => store.requeue(jobId, 1, 'stale writer', owner)],
          ['storeResult', () => store.storeResult(jobId, 1, outcome(), METRICS, owner)],
          ['finish', () => store.finish(jobId, 1, 'TimedOut', 'stale writer', owner)],
          ['appendLog', () => store.appendLog(jobId, 1, 'stdout', 0, 'stale', owner)],
        ];
      }

      const snapshot = async (jobId: string) => ({
        job: await store.get(jobId),
        attempts: await store.attempts(jobId),
        logs: await store.logs(jobId),
      });

      it.each([
        ['Assigned', false],
        ['Running', true],
      ] as const)('refuses every write for the current attempt (%s) with a lower owner token, changing nothing', async (_, running) => {
        const jobId = await assigned({}, running);
        const before = await snapshot(jobId);
        for (const [name, write] of attemptWrites(jobId, OWNER - 1)) {
          await expect(write(), name).rejects.toBeInstanceOf(MusterError);
        }
        expect(await snapshot(jobId)).toEqual(before);
      });

      it('lets a higher owner token take an attempt over, and then refuses the one it replaced', async () => {
        const jobId = await assigned({}, true);
        expect(await store.appendLog(jobId, 1, 'stdout', 0, 'new owner', OWNER + 1)).toEqual({ status: 'stored' });
        await expect(store.storeResult(jobId, 1, outcome(), METRICS, OWNER)).rejects.toBeInstanceOf(MusterError);
        expect((await store.get(jobId))?.state).toBe('Running');
        expect(await store.storeResult(jobId, 1, outcome(), METRICS, OWNER + 1)).toBe('stored');
        expect((await store.get(jobId))?.state).toBe('Completed');
      });

      it('lets a new owner raise the fence first (takeOver), so the old owner writes nothing after it', async () => {
        const jobId = await assigned({}, true);
        expect(await store.takeOver(jobId, 1, OWNER + 1)).toBe(true);
        const before = await snapshot(jobId);
        for (const [name, write] of attemptWrites(jobId, OWNER)) {
          await expect(write(), name).rejects.toBeInstanceOf(MusterError);
        }
        expect(await snapshot(jobId)).toEqual(before);
        // Again with the same token: nothing to raise, still the holder's.
        expect(await store.takeOver(jobId, 1, OWNER + 1)).toBe(true);
        await expect(store.takeOver(jobId, 1, OWNER)).rejects.toBeInstanceOf(MusterError);
        expect(await store.storeResult(jobId, 1, outcome(), METRICS, OWNER + 1)).toBe('stored');
      });

      it('takes over only an attempt a node holds: a queued, ended or other attempt is stale', async () => {
        const queued = (await store.submit(newJob(), OWNER)).job_id;
        expect(await store.takeOver(queued, 1, OWNER + 1)).toBe(false);
        const running = await assigned({}, true);
        expect(await store.takeOver(running, 2, OWNER + 1)).toBe(false);
        expect(await store.storeResult(running, 1, outcome(), METRICS, OWNER)).toBe('stored');
        expect(await store.takeOver(running, 1, OWNER + 1)).toBe(false);
        expect(await store.takeOver('no-such-job', 1, OWNER + 1)).toBe(false);
        // A stale take-over wrote nothing: the ended job keeps its owner's writes.
        expect((await store.get(running))?.state).toBe('Completed');
      });

      it('fences each job on its own: another job keeps its owner', async () => {
        const taken = await assigned({}, true);
        const other = await assigned({}, true);
        await store.appendLog(taken, 1, 'stdout', 0, 'x', OWNER + 1);
        expect(await store.storeResult(other, 1, outcome(), METRICS, OWNER)).toBe('stored');
      });

      it("gives a new attempt its assigner's token, whatever the last attempt's was", async () => {
        const { job_id } = await store.submit(newJob(), OWNER + 2);
        // The submitter's token does not fence the first attempt: no node had the job.
        expect(await store.assign(job_id, 1, NODE_A, OWNER + 1)).toBe(true);
        await expect(store.markRunning(job_id, 1, OWNER)).rejects.toBeInstanceOf(MusterError);
        expect(await store.markRunning(job_id, 1, OWNER + 1)).toBe(true);
        expect(await store.requeue(job_id, 1, 'node moved', OWNER + 3)).toMatchObject({ state: 'Queued', attempt: 2 });
        // Attempt 2 goes to a node of another owner, whose token is lower: it is the attempt's now.
        expect(await store.assign(job_id, 2, NODE_B, OWNER)).toBe(true);
        expect(await store.markRunning(job_id, 2, OWNER)).toBe(true);
        await expect(store.storeResult(job_id, 2, outcome(), METRICS, OWNER - 1)).rejects.toBeInstanceOf(MusterError);
        expect(await store.storeResult(job_id, 2, outcome(), METRICS, OWNER)).toBe('stored');
      });

      it('answers a write for another attempt by its compare-and-set, whatever its token', async () => {
        const jobId = await assigned({}, true);
        await store.requeue(jobId, 1, 'node dead', OWNER + 1);
        expect(await store.assign(jobId, 2, NODE_B, OWNER + 1)).toBe(true);
        // The first owner's late writes for attempt 1: stale, not refused, and nothing changes.
        const before = await snapshot(jobId);
        expect(await store.storeResult(jobId, 1, outcome(), METRICS, OWNER)).toBe('stale');
        expect(await store.markRunning(jobId, 1, OWNER)).toBe(false);
        expect(await store.requeue(jobId, 1, 'late', OWNER)).toBeUndefined();
        expect(await store.finish(jobId, 1, 'TimedOut', 'late', OWNER)).toBe(false);
        expect(await snapshot(jobId)).toEqual(before);
      });

      it('does not fence writes that move no attempt of a node', async () => {
        const running = await assigned({}, true);
        expect(await store.requestCancel(running, OWNER - 1)).toMatchObject({ state: 'Running', cancel_requested: true });
        const queued = (await store.submit(newJob(), OWNER + 1)).job_id;
        expect(await store.finish(queued, 1, 'TimedOut', 'deadline passed', OWNER - 1)).toBe(true);
        expect(await store.retry(queued, 1, OWNER - 1)).toMatchObject({ state: 'Queued', attempt: 2 });
        const [batched] = await store.submitMany([newJob()], OWNER + 4);
        expect(await store.assign(batched!.job_id, 1, NODE_A, OWNER)).toBe(true);
      });
    });

    describe('the job machine decides every move', () => {
      /** A fresh job brought to each state the machine tells apart, at attempt 1. */
      const jobs: Array<[string, () => Promise<string>]> = [
        ['Queued', async () => (await store.submit(newJob(), OWNER)).job_id],
        ['Assigned', () => assigned()],
        ['Assigned, cancel requested', async () => cancelled(await assigned())],
        ['Running', () => assigned({}, true)],
        ['Running, last attempt', () => assigned({ max_attempts: 1 }, true)],
        ['Running, cancel requested', async () => cancelled(await assigned({}, true))],
        ...(['Completed', 'Failed', 'Cancelled', 'TimedOut'] as const).map((status): [string, () => Promise<string>] => [
          `${status} by its result`,
          async () => {
            const id = await assigned({}, true);
            expect(await store.storeResult(id, 1, outcome(status), METRICS, OWNER)).toBe('stored');
            return id;
          },
        ]),
        ['Cancelled while queued', async () => cancelled((await store.submit(newJob(), OWNER)).job_id)],
        [
          'TimedOut by the plane',
          async () => {
            const id = await assigned({}, true);
            expect(await store.finish(id, 1, 'TimedOut', 'deadline', OWNER)).toBe(true);
            return id;
          },
        ],
        [
          'DeadLettered',
          async () => {
            const id = await assigned({ max_attempts: 1 });
            await store.requeue(id, 1, 'rejected', OWNER);
            return id;
          },
        ],
      ];

      async function cancelled(id: string): Promise<string> {
        await store.requestCancel(id, OWNER);
        return id;
      }

      /**
       * Each event as the store is asked it, straight (no coordinator in front): whether the
       * store's answer says it moved the job; undefined where the answer cannot tell (a cancel
       * answers with the record either way).
       */
      const events: Array<[string, JobEvent, (id: string) => Promise<boolean | undefined>]> = [
        ['assign', { type: 'assign' }, async (id) => store.assign(id, 1, NODE_B, OWNER)],
        ['markRunning', { type: 'accept' }, async (id) => store.markRunning(id, 1, OWNER)],
        ...(['Completed', 'Failed', 'Cancelled', 'TimedOut'] as const).map(
          (status): [string, JobEvent, (id: string) => Promise<boolean>] => [
            `storeResult ${status}`,
            { type: 'result', status },
            async (id) => (await store.storeResult(id, 1, outcome(status), METRICS, OWNER)) === 'stored',
          ],
        ),
        ['requeue', { type: 'withdraw' }, async (id) => (await store.requeue(id, 1, 'withdrawn', OWNER)) !== undefined],
        ...(['Cancelled', 'TimedOut'] as const).map((state): [string, JobEvent, (id: string) => Promise<boolean>] => [
          `finish ${state}`,
          { type: 'finish', state },
          async (id) => store.finish(id, 1, state, 'by the plane', OWNER),
        ]),
        ['requestCancel', { type: 'cancel' }, async (id) => (await store.requestCancel(id, OWNER), undefined)],
        ['retry', { type: 'retry' }, async (id) => (await store.retry(id, 1, OWNER)) !== undefined],
      ];

      it.each(jobs)('moves a job (%s) exactly as the machine says, and refuses the rest changing nothing', async (_, make) => {
        for (const [call, event, ask] of events) {
          const id = await make();
          const before = { job: await store.get(id), attempts: await store.attempts(id), logs: await store.logs(id) };
          const expected = nextJobState(lifecycleOf(before.job!), event);
          const moved = await ask(id);
          const label = `${call} (job ${before.job!.state})`;
          if (moved !== undefined) expect(moved, label).toBe(expected !== undefined);
          if (expected === undefined) {
            expect({ job: await store.get(id), attempts: await store.attempts(id), logs: await store.logs(id) }, label).toEqual(before);
          } else {
            expect(lifecycleOf((await store.get(id))!), label).toEqual(expected);
          }
        }
      });

      it('refuses markRunning of a Queued job, storeResult for a Cancelled job and assign of a Running job', async () => {
        const queued = (await store.submit(newJob(), OWNER)).job_id;
        expect(await store.markRunning(queued, 1, OWNER)).toBe(false);
        expect((await store.get(queued))?.state).toBe('Queued');
        const cancelledJob = await cancelled((await store.submit(newJob(), OWNER)).job_id);
        expect(await store.storeResult(cancelledJob, 1, outcome(), METRICS, OWNER)).toBe('stale');
        expect((await store.get(cancelledJob))?.result).toBeUndefined();
        const running = await assigned({}, true);
        expect(await store.assign(running, 1, NODE_B, OWNER)).toBe(false);
        expect(await store.get(running)).toMatchObject({ state: 'Running', node_id: NODE_A });
        expect((await store.attempts(running)).map((a) => a.node_id)).toEqual([NODE_A]);
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
        await store.submit(newJob(), OWNER);
        await store.submit(newJob(), OWNER);
        await assigned();
        await assigned({}, true);
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS, OWNER);
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'rejected', OWNER);
        const requeued = await assigned();
        await store.requeue(requeued, 1, 'rejected', OWNER);
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

    describe('pipelines: submitMany, listJobs, retry', () => {
      it('stores a batch in order, each Queued at attempt 1 with its own id and a growing seq', async () => {
        const specs = [newJob({ priority: 'Low' }), newJob({ priority: 'Critical' }), newJob({ max_attempts: 1 })];
        const records = await store.submitMany(specs, OWNER);
        expect(records).toHaveLength(3);
        records.forEach((rec, i) => {
          // Records keep each secret's name, never its value (secrets() opens them for an assignment).
          const shown = { ...specs[i]!.execution_context, secrets: { S: '***' } };
          expect(rec).toMatchObject({ ...specs[i], execution_context: shown, state: 'Queued', attempt: 1, cancel_requested: false });
          expect(rec.job_id).toMatch(UUID);
        });
        expect(await store.secrets(records[0]!.job_id)).toEqual({ S: 'y' });
        expect(records[1]!.seq).toBeGreaterThan(records[0]!.seq);
        expect(records[2]!.seq).toBeGreaterThan(records[1]!.seq);
        for (const rec of records) expect(await store.get(rec.job_id)).toEqual(rec);
        expect(await store.submitMany([], OWNER)).toEqual([]);
      });

      it('lists newest first, filtered by state, node and priority', async () => {
        const low = await store.submit(newJob({ priority: 'Low' }), OWNER);
        const onA = await assigned({ priority: 'High' });
        const high = await store.submit(newJob({ priority: 'High' }), OWNER);
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

      it("lists a node's jobs in play by node and state (what a replica taking the node over reads), and forgets them as they end", async () => {
        const first = await assigned({}, false);
        const second = await assigned({}, true);
        const ids = async (filter: Parameters<JobStore['listJobs']>[0]): Promise<string[]> => (await store.listJobs(filter, 10)).map((j) => j.job_id);
        expect(await ids({ node_id: NODE_A, state: 'Assigned' })).toEqual([first]);
        expect(await ids({ node_id: NODE_A, state: 'Running' })).toEqual([second]);
        expect(await ids({ node_id: NODE_B, state: 'Running' })).toEqual([]);
        await store.markRunning(first, 1, OWNER);
        expect(await ids({ node_id: NODE_A, state: 'Running' })).toEqual([second, first]);
        expect(await ids({ node_id: NODE_A, state: 'Assigned' })).toEqual([]);
        expect(await store.storeResult(second, 1, outcome(), METRICS, OWNER)).toBe('stored');
        await store.requeue(first, 1, 'node gone', OWNER);
        expect(await ids({ node_id: NODE_A, state: 'Running' })).toEqual([]);
      });

      it('pages through every job once while jobs are submitted between pages', async () => {
        const before = (await store.submitMany(Array.from({ length: 25 }, () => newJob()), OWNER)).map((j) => j.job_id);
        const seen: string[] = [];
        let cursor: number | undefined;
        for (;;) {
          const page = await store.listJobs(cursor === undefined ? {} : { before_seq: cursor }, 7);
          seen.push(...page.map((j) => j.job_id));
          if (page.length < 7) break;
          cursor = page.at(-1)!.seq;
          await store.submit(newJob(), OWNER);
        }
        expect(seen).toEqual([...before].reverse());
      });

      it('retries a job that ended Failed, TimedOut, Cancelled or DeadLettered as its next attempt', async () => {
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS, OWNER);
        const timedOut = await assigned({}, true);
        await store.finish(timedOut, 1, 'TimedOut', 'deadline', OWNER);
        const cancelled = (await store.submit(newJob(), OWNER)).job_id;
        await store.requestCancel(cancelled, OWNER);
        const dead = await assigned({ max_attempts: 1 });
        await store.requeue(dead, 1, 'node dead', OWNER);
        for (const id of [failed, timedOut, cancelled, dead]) {
          const before = await store.get(id);
          const again = await store.retry(id, 1, OWNER);
          expect(again, `${before?.state}`).toMatchObject({ job_id: id, state: 'Queued', attempt: 2, cancel_requested: false });
          expect(again?.node_id).toBeUndefined();
          expect(again?.result).toBeUndefined();
          expect(again?.reason).toBeUndefined();
          expect(await store.get(id)).toEqual(again);
          expect((await store.queued()).map((j) => j.job_id)).toContain(id);
        }
        // The new attempt runs like any other; the failed one's result stays with attempt 1.
        expect(await store.assign(failed, 2, NODE_B, OWNER)).toBe(true);
        expect((await store.attempts(failed)).map((a) => [a.attempt, a.node_id, a.outcome])).toEqual([
          [1, NODE_A, 'Failed'],
          [2, NODE_B, undefined],
        ]);
      });

      it('refuses to retry a job that is queued, running or Completed, or at another attempt', async () => {
        const queued = (await store.submit(newJob(), OWNER)).job_id;
        const running = await assigned({}, true);
        const done = await assigned({}, true);
        await store.storeResult(done, 1, outcome(), METRICS, OWNER);
        const failed = await assigned({}, true);
        await store.storeResult(failed, 1, outcome('Failed'), METRICS, OWNER);
        expect(await store.retry(queued, 1, OWNER)).toBeUndefined();
        expect(await store.retry(running, 1, OWNER)).toBeUndefined();
        expect(await store.retry(done, 1, OWNER)).toBeUndefined();
        expect(await store.retry(failed, 2, OWNER)).toBeUndefined();
        expect(await store.retry('00000000-0000-4000-8000-000000000000', 1, OWNER)).toBeUndefined();
        expect((await store.get(running))?.state).toBe('Running');
        expect((await store.get(failed))?.state).toBe('Failed');
        // A second retry of the same end loses the compare-and-set.
        expect(await store.retry(failed, 1, OWNER)).toBeDefined();
        expect(await store.retry(failed, 1, OWNER)).toBeUndefined();
      });
    });
  });
}
