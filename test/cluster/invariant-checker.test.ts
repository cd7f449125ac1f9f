// The cluster failure tests' invariant checker, against a real nats-server and a real
// JetStreamJobStore: a clean history (with a takeover and a refused stale write) passes; each
// seeded violation, written past the store straight into its bucket where the store would refuse
// it, is reported under its invariant; a bucket without history is reported as unchecked.
import { randomBytes } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { JetStreamJobStore } from '../../supervisor/cluster/jetstream-job-store.js';
import { decodeDoc, encodeDoc, type JobDoc } from '../../supervisor/cluster/job-doc.js';
import { SecretBox } from '../../supervisor/store/secret-box.js';
import { natsFixture } from '../supervisor/cluster/nats-fixture.js';
import { METRICS, newJob, outcome } from '../supervisor/store/job-store-contract.js';
import {
  checkCluster,
  nodeDeathsInLog,
  nodeRunsInLog,
  type CheckReport,
} from './invariant-checker.js';

const nats = natsFixture();
const box = SecretBox.fromKey(randomBytes(32));
const NODE_A = '11111111-1111-4111-8111-111111111111';
const NODE_B = '22222222-2222-4222-8222-222222222222';
/** Replica A's token for its nodes, and B's, higher: B took a node over. */
const TOKEN_A = 10;
const TOKEN_B = 20;

let opened = 0;

interface Bucket {
  store: JetStreamJobStore;
  /** The same bucket, for writes past the store. */
  kv: KV;
  bucket: string;
  check(options?: Parameters<typeof checkCluster>[1]): Promise<CheckReport>;
}

/** A store on a fresh bucket that keeps `history` revisions per job, and a raw handle on it. */
async function openBucket(history = 16): Promise<Bucket> {
  const n = `${process.pid}-${++opened}`;
  const bucket = `checker-jobs-${n}`;
  const nc = await nats.connection();
  const store = await JetStreamJobStore.open({
    nc,
    box,
    history,
    bucket,
    logStream: `CHECKER_LOGS_${n}`,
    logSubject: `checker.logs.t${n}`,
    batchStream: `CHECKER_BATCHES_${n}`,
    batchSubject: `checker.batch.t${n}`,
  });
  nats.closers.push(() => store.close());
  const kv = await new Kvm(nc).open(bucket);
  return { store, kv, bucket, check: (options = {}) => checkCluster(nc, { bucket, ...options }) };
}

/** A job submitted and run to completion on NODE_A under replica A's token. */
async function completedJob(store: JetStreamJobStore): Promise<string> {
  const { job_id } = await store.submit(newJob(), TOKEN_A);
  expect(await store.assign(job_id, 1, NODE_A, TOKEN_A)).toBe(true);
  expect(await store.markRunning(job_id, 1, TOKEN_A)).toBe(true);
  expect(await store.storeResult(job_id, 1, outcome(), METRICS, TOKEN_A)).toBe('stored');
  return job_id;
}

/** Writes `change(doc)` over the job's current value, as a store that skipped its checks would. */
async function forceWrite(kv: KV, jobId: string, change: (doc: JobDoc) => JobDoc): Promise<void> {
  const entry = await kv.get(jobId);
  if (entry === null) throw new Error(`no job ${jobId}`);
  const doc = decodeDoc(entry.value);
  await kv.update(jobId, encodeDoc(change({ ...doc, seq: doc.seq ?? entry.revision })), entry.revision);
}

describe('invariant checker', () => {
  it('finds nothing wrong in a clean history, a takeover and a refused stale write included', async () => {
    const b = await openBucket();
    const plain = await completedJob(b.store);
    // Attempt 1 rejected, attempt 2 started under A, taken over by B (a higher token), and A's
    // late result refused by the store's fence.
    const { job_id: moved } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.assign(moved, 1, NODE_A, TOKEN_A);
    await b.store.requeue(moved, 1, 'rejected: busy', TOKEN_A);
    await b.store.assign(moved, 2, NODE_A, TOKEN_A);
    await b.store.markRunning(moved, 2, TOKEN_A);
    expect(await b.store.takeOver(moved, 2, TOKEN_B)).toBe(true);
    await b.store.appendLog(moved, 2, 'stdout', 0, 'taken over\n', TOKEN_B);
    await expect(b.store.storeResult(moved, 2, outcome('Failed'), METRICS, TOKEN_A)).rejects.toThrow(/newer writer/);
    expect(await b.store.storeResult(moved, 2, outcome(), METRICS, TOKEN_B)).toBe('stored');
    // A job cancelled while queued: final without any attempt.
    const { job_id: cancelled } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.requestCancel(cancelled, TOKEN_A);

    const report = await b.check({ expectedJobs: [plain, moved, cancelled], healthyNodes: new Set([NODE_A, NODE_B]), deaths: [], runs: [] });
    expect(report.violations).toEqual([]);
    expect(report.jobs).toBe(3);
    // plain: running, result; moved: running, requeue, takeover, running, result.
    expect(report.fencedWritesChecked).toBeGreaterThanOrEqual(6);
    expect(report.unchecked).toEqual([]);
  });

  it('reports a job left unfinished, and one that was never stored', async () => {
    const b = await openBucket();
    const { job_id: running } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.assign(running, 1, NODE_A, TOKEN_A);
    const { job_id: queued } = await b.store.submit(newJob(), TOKEN_A);
    const missing = '33333333-3333-4333-8333-333333333333';

    const report = await b.check({ expectedJobs: [running, queued, missing] });
    expect(report.violations.map((v) => [v.invariant, v.job_id])).toEqual([
      ['final', missing],
      ['final', running],
      ['final', queued],
    ]);
    expect(report.violations[1]!.detail).toContain('Assigned at attempt 1');
  });

  it('reports a second result: one stored for a withdrawn attempt, and one written over a stored result', async () => {
    const b = await openBucket();
    const { job_id: twice } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.assign(twice, 1, NODE_A, TOKEN_A);
    await b.store.requeue(twice, 1, 'accept timeout', TOKEN_A);
    await b.store.assign(twice, 2, NODE_B, TOKEN_A);
    await b.store.storeResult(twice, 2, outcome(), METRICS, TOKEN_A);
    // The store discards a result for attempt 1 (stale); a broken one would have kept it.
    expect(await b.store.storeResult(twice, 1, outcome(), METRICS, TOKEN_A)).toBe('stale');
    await forceWrite(b.kv, twice, (doc) => ({ ...doc, results: { ...doc.results, '1': { result: outcome(), metrics: METRICS } } }));
    const replaced = await completedJob(b.store);
    expect(await b.store.storeResult(replaced, 1, outcome('Failed'), METRICS, TOKEN_A)).toBe('duplicate');
    await forceWrite(b.kv, replaced, (doc) => ({ ...doc, results: { '1': { result: { ...outcome(), exit_code: 3 }, metrics: METRICS } } }));

    const report = await b.check();
    expect(report.violations.map((v) => [v.invariant, v.job_id])).toEqual([
      ['one-result', twice],
      ['one-result', replaced],
    ]);
    expect(report.violations[0]!.detail).toContain('attempt 1, which ended Withdrawn');
    expect(report.violations[1]!.detail).toContain('replaced');
  });

  it('reports overlapping attempts, in the stored attempts and in the runs on nodes', async () => {
    const b = await openBucket();
    const overlapped = await completedJob(b.store);
    // A second attempt assigned while the first was still open: what no store move makes.
    await forceWrite(b.kv, overlapped, (doc) => {
      const first = doc.attempts[0]!;
      const early = new Date(Date.parse(first.ended_at!) - 1_000).toISOString();
      return { ...doc, attempts: [first, { job_id: overlapped, attempt: 2, node_id: NODE_B, assigned_at: early, ended_at: first.ended_at!, outcome: 'Withdrawn' }] };
    });
    const clean = await completedJob(b.store);
    const runs = [
      { node_id: NODE_A, job_id: clean, attempt: 1, started: 1_000, ended: 3_000 },
      { node_id: NODE_B, job_id: clean, attempt: 2, started: 2_000, ended: 2_500 },
    ];

    const report = await b.check({ runs });
    expect(report.violations.map((v) => [v.invariant, v.job_id])).toEqual([
      ['no-overlap', overlapped],
      ['no-overlap', clean],
    ]);
    expect(report.violations[0]!.detail).toContain('before attempt 1');
    expect(report.violations[1]!.detail).toContain(`still ran on ${NODE_A}`);
  });

  it('reports a write that landed under a stale token, and an attempt whose token fell', async () => {
    const b = await openBucket();
    const { job_id: stale } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.assign(stale, 1, NODE_A, TOKEN_A);
    await b.store.markRunning(stale, 1, TOKEN_B);
    await expect(b.store.storeResult(stale, 1, outcome(), METRICS, TOKEN_A)).rejects.toThrow(/newer writer/);
    // What the refused write would have been, had the fence let it pass: the owner stays B's.
    await forceWrite(b.kv, stale, (doc) => ({ ...doc, record: { ...doc.record, reason: 'late' }, written: { attempt: 1, owner: TOKEN_A } }));
    const { job_id: fell } = await b.store.submit(newJob(), TOKEN_A);
    await b.store.assign(fell, 1, NODE_A, TOKEN_B);
    await forceWrite(b.kv, fell, (doc) => ({ ...doc, owner: TOKEN_A, written: { attempt: 1, owner: TOKEN_B } }));

    const report = await b.check();
    expect(report.violations.map((v) => [v.invariant, v.job_id])).toEqual([
      ['final', stale],
      ['fenced', stale],
      ['final', fell],
      ['fenced', fell],
    ]);
    expect(report.violations[1]!.detail).toContain(`with token ${TOKEN_A}, below the token ${TOKEN_B}`);
    expect(report.violations[3]!.detail).toContain(`fell from ${TOKEN_B} to ${TOKEN_A}`);
  });

  it('reports a healthy node declared dead, in a replica log and in a withdrawn attempt', async () => {
    const b = await openBucket();
    const { job_id } = await b.store.submit(newJob({ max_attempts: 1 }), TOKEN_A);
    await b.store.assign(job_id, 1, NODE_A, TOKEN_A);
    await b.store.requeue(job_id, 1, 'node expired', TOKEN_A);
    // Requeued by a new owner as if the node had not come back, and, for a node that may go, as dead.
    const { job_id: orphaned } = await b.store.submit(newJob({ max_attempts: 1 }), TOKEN_A);
    await b.store.assign(orphaned, 1, NODE_A, TOKEN_B);
    await b.store.requeue(orphaned, 1, 'node did not resume after its replica changed', TOKEN_B);
    const { job_id: other } = await b.store.submit(newJob({ max_attempts: 1 }), TOKEN_A);
    await b.store.assign(other, 1, NODE_B, TOKEN_A);
    await b.store.requeue(other, 1, 'node expired', TOKEN_A);
    // The lines registrar.ts writes when a session ends (pino JSON).
    const log = [
      { level: 30, time: 1_700_000_000_000, msg: 'node gone', node_id: NODE_A, reason: 'expired' },
      { level: 30, time: 1_700_000_000_001, msg: 'node gone', node_id: NODE_B, reason: 'shutdown' },
      { level: 30, time: 1_700_000_000_002, msg: 'node gone', node_id: NODE_B, reason: 'expired' },
    ];
    const deaths = nodeDeathsInLog('replica-a', log);
    expect(deaths.map((d) => [d.node_id, d.reason])).toEqual([
      [NODE_A, 'expired'],
      [NODE_B, 'expired'],
    ]);

    const report = await b.check({ healthyNodes: new Set([NODE_A]), deaths });
    expect(report.violations.map((v) => [v.invariant, v.job_id, v.node_id])).toEqual([
      ['no-healthy-dead', job_id, NODE_A],
      ['no-healthy-dead', orphaned, NODE_A],
      ['no-healthy-dead', undefined, NODE_A],
    ]);
    expect(report.violations[0]!.detail).toContain('withdrawn from healthy node');
    expect(report.violations[1]!.detail).toContain('did not resume');
    expect(report.violations[2]!.detail).toContain('replica replica-a declared');
  });

  it('says the fencing could not be checked when the bucket keeps one revision per job', async () => {
    const b = await openBucket(1);
    await completedJob(b.store);
    const report = await b.check();
    expect(report.violations).toEqual([]);
    expect(report.fencedWritesChecked).toBe(0);
    expect(report.unchecked.join('\n')).toMatch(/history 1/);
  });

  it('reads runs on a node from the agent log lines', () => {
    const job = '44444444-4444-4444-8444-444444444444';
    const runs = nodeRunsInLog(NODE_A, [
      { time: 1, msg: 'job started', job_id: job, attempt: 1 },
      { time: 2, msg: 'job ended', job_id: job, attempt: 1, status: 'Completed' },
      { time: 3, msg: 'job started', job_id: job, attempt: 2 },
    ]);
    expect(runs).toEqual([
      { node_id: NODE_A, job_id: job, attempt: 1, started: 1, ended: 2 },
      { node_id: NODE_A, job_id: job, attempt: 2, started: 3 },
    ]);
  });
});
