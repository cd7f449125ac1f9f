// The JetStream job store against the JobStore contract on a real nats-server, plus what only a
// cluster store promises: two stores racing for one job, and a server killed and restarted.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { JetStreamJobStore, type JetStreamJobStoreOptions } from '../../../supervisor/cluster/jetstream-job-store.js';
import { decodeDoc } from '../../../supervisor/cluster/job-doc.js';
import { MusterError } from '../../../protocol/errors.js';
import { SecretBox } from '../../../supervisor/store/secret-box.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { METRICS, OWNER, jobStoreContract, newJob, outcome } from '../store/job-store-contract.js';
import { nodeArgs } from '../../muster-process.js';

let server: NatsServer;
const connections: NatsConnection[] = [];
const KEY = randomBytes(32);
const box = SecretBox.fromKey(KEY);
const SUBMITTER = fileURLToPath(new URL('./submit-batch-process.ts', import.meta.url));

beforeAll(async () => {
  server = await NatsServer.start();
});
afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close()));
  await server?.stop();
});

async function connection(url = server.url): Promise<NatsConnection> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  connections.push(nc);
  return nc;
}

/** Resolves on the connection's next reconnect; fails the test after 20 s. */
async function nextReconnect(nc: NatsConnection): Promise<void> {
  const wait = (async () => {
    for await (const status of nc.status()) if (status.type === 'reconnect') return;
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no reconnect within 20 s')), 20_000);
  });
  try {
    await Promise.race([wait, late]);
  } finally {
    clearTimeout(timer);
  }
}

let opened = 0;
/** Names of a fresh bucket and streams, so each test starts empty on the one server. */
function freshNames(): Omit<JetStreamJobStoreOptions, 'nc' | 'box'> {
  const n = `${process.pid}-${++opened}`;
  return {
    bucket: `muster-jobs-${n}`,
    logStream: `MUSTER_LOGS_${n}`,
    logSubject: `muster.logs.t${n}`,
    batchStream: `MUSTER_JOB_BATCHES_${n}`,
    batchSubject: `muster.jobs.batch.t${n}`,
  };
}

jobStoreContract('JetStreamJobStore', async () => JetStreamJobStore.open({ nc: await connection(), box, ...freshNames() }));

const NODE_A = '11111111-1111-4111-8111-111111111111';
const NODE_B = '22222222-2222-4222-8222-222222222222';

describe('JetStreamJobStore across replicas', () => {
  it('lets exactly one of two stores on two connections win each assign of one job (50 rounds)', async () => {
    const names = freshNames();
    const a = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    const b = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    try {
      let winsA = 0;
      for (let round = 0; round < 50; round++) {
        const { job_id } = await a.submit(newJob(), OWNER);
        // Each side goes first in turn, so that neither wins only by starting first.
        const assignA = (): Promise<boolean> => a.assign(job_id, 1, NODE_A, OWNER);
        const assignB = (): Promise<boolean> => b.assign(job_id, 1, NODE_B, OWNER + 1);
        const [wonA, wonB] =
          round % 2 === 0 ? await Promise.all([assignA(), assignB()]) : (await Promise.all([assignB(), assignA()])).reverse();
        expect(wonA !== wonB, `round ${round}: ${wonA} ${wonB}`).toBe(true);
        const record = await b.get(job_id);
        expect(record).toMatchObject({ state: 'Assigned', node_id: wonA ? NODE_A : NODE_B });
        expect((await a.attempts(job_id)).map((x) => x.node_id)).toEqual([wonA ? NODE_A : NODE_B]);
        if (wonA) winsA++;
      }
      // Both sides won some rounds, or the race was not a race.
      expect(winsA).toBeGreaterThan(0);
      expect(winsA).toBeLessThan(50);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("refuses the old owner's writes once another replica took the attempt over, though its index still shows the old token", async () => {
    const names = freshNames();
    const old = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    const next = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    try {
      const { job_id } = await old.submit(newJob(), OWNER);
      expect(await old.assign(job_id, 1, NODE_A, OWNER)).toBe(true);
      expect(await old.markRunning(job_id, 1, OWNER)).toBe(true);
      // The node moved to the other replica, whose claim has a higher token: it takes the attempt over.
      expect(await next.appendLog(job_id, 1, 'stdout', 0, 'after takeover', OWNER + 4)).toEqual({ status: 'stored' });
      for (const write of [
        () => old.storeResult(job_id, 1, outcome('Failed'), METRICS, OWNER),
        () => old.requeue(job_id, 1, 'node dead', OWNER),
        () => old.finish(job_id, 1, 'TimedOut', 'stale', OWNER),
        () => old.appendLog(job_id, 1, 'stdout', 1, 'stale', OWNER),
      ]) {
        await expect(write()).rejects.toBeInstanceOf(MusterError);
      }
      expect(await next.get(job_id)).toMatchObject({ state: 'Running', attempt: 1 });
      // Both replicas' nodes report the result at once: it is stored once.
      const answers = await Promise.all([
        next.storeResult(job_id, 1, outcome(), METRICS, OWNER + 4),
        old.storeResult(job_id, 1, outcome(), METRICS, OWNER + 4),
      ]);
      expect(answers.sort()).toEqual(['duplicate', 'stored']);
      expect((await old.logs(job_id)).map((l) => l.data)).toEqual(['after takeover']);
    } finally {
      await old.close();
      await next.close();
    }
  });

  it("opens secrets another replica sealed, and sees its jobs in queued() and counts()", async () => {
    const names = freshNames();
    const a = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    const b = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    try {
      const { job_id } = await a.submit(newJob({ execution_context: { ...newJob().execution_context, secrets: { T: 'shh' } } }), OWNER);
      expect(await b.secrets(job_id)).toEqual({ T: 'shh' });
      await expect.poll(async () => (await b.queued()).map((j) => j.job_id), { timeout: 5_000 }).toEqual([job_id]);
      expect((await b.counts()).Queued).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** A store that keeps eight revisions per job, on buckets of its own. */
async function historyStore(): Promise<{ names: ReturnType<typeof freshNames>; nc: Awaited<ReturnType<typeof connection>>; store: JetStreamJobStore }> {
  const names = freshNames();
  const nc = await connection();
  return { names, nc, store: await JetStreamJobStore.open({ nc, box, history: 8, ...names }) };
}

/** A job submitted and assigned to NODE_A's first attempt. */
async function assignedJob(store: JetStreamJobStore): Promise<string> {
  const { job_id } = await store.submit(newJob(), OWNER);
  await store.assign(job_id, 1, NODE_A, OWNER);
  return job_id;
}

describe('JetStreamJobStore history', () => {
  it('keeps the revisions asked for, each fenced one naming the attempt and token it was written with', async () => {
    const { names, nc, store } = await historyStore();
    try {
      const job_id = await assignedJob(store);
      await store.markRunning(job_id, 1, OWNER + 1);
      await store.requestCancel(job_id, OWNER);
      const kv = await new Kvm(nc).open(names.bucket!);
      const written = [];
      for await (const e of await kv.history({ key: job_id })) written.push(decodeDoc(e.value).written);
      // Submit, assign (they start no node's attempt) and the cancel mark are not fenced.
      expect(written).toEqual([undefined, undefined, { attempt: 1, owner: OWNER + 1 }, undefined]);
    } finally {
      await store.close();
    }
  });

  it("writes a node's acceptance and its result, issued together, as one revision that answers both", async () => {
    const { names, nc, store } = await historyStore();
    try {
      const job_id = await assignedJob(store);
      // As a node's JobAccepted and JobResult arrive in one read: neither awaited before the other.
      const [running, stored, stale] = await Promise.all([
        store.markRunning(job_id, 1, OWNER),
        store.storeResult(job_id, 1, outcome(), METRICS, OWNER),
        store.markRunning(job_id, 1, OWNER),
      ]);
      expect([running, stored, stale]).toEqual([true, 'stored', false]);
      const kv = await new Kvm(nc).open(names.bucket!);
      const docs = [];
      for await (const e of await kv.history({ key: job_id })) docs.push(decodeDoc(e.value));
      expect(docs.map((d) => d.record.state)).toEqual(['Queued', 'Assigned', 'Completed']);
      expect(docs[2]!.written).toEqual({ attempt: 1, owner: OWNER });
      expect(docs[2]!.attempts[0]).toMatchObject({ accepted_at: expect.any(String), outcome: 'Completed' });
      expect(await store.get(job_id)).toMatchObject({ state: 'Completed', started_at: expect.any(String), result: outcome() });
      // Ended a moment ago: still known without a read (a scheduler that lost the job asks so).
      expect(store.peek(job_id)).toMatchObject({ state: 'Completed', attempt: 1 });
    } finally {
      await store.close();
    }
  });

  it('refuses a history JetStream cannot keep', async () => {
    const nc = await connection();
    for (const history of [0, 65, 1.5]) {
      await expect(JetStreamJobStore.open({ nc, box, history, ...freshNames() })).rejects.toThrow(/history must be an integer from 1 to 64/);
    }
  });
});

describe('JetStreamJobStore watch', () => {
  it('is made again when its consumer is lost without a reconnect, missing nothing', async () => {
    const names = freshNames();
    const nc = await connection();
    const watching = await JetStreamJobStore.open({ nc, box, ...names });
    const writer = await JetStreamJobStore.open({ nc: await connection(), box, ...names });
    try {
      const first = await writer.submit(newJob(), OWNER);
      await expect.poll(async () => (await watching.queued()).length, { timeout: 5_000 }).toBe(1);
      // Delete every consumer of the bucket's stream (the watches) on the server, under the client's feet.
      const jsm = await jetstreamManager(nc);
      for await (const consumer of jsm.consumers.list(`KV_${names.bucket}`)) {
        await jsm.consumers.delete(`KV_${names.bucket}`, consumer.name);
      }
      const second = await writer.submit(newJob(), OWNER);
      // This store also writes meanwhile: its own revision must not hide the writer's from the resumed watch.
      const own = await watching.submit(newJob(), OWNER);
      await expect
        .poll(async () => (await watching.queued()).map((j) => j.job_id).sort(), { timeout: 20_000, interval: 200 })
        .toEqual([first.job_id, second.job_id, own.job_id].sort());
    } finally {
      await watching.close();
      await writer.close();
    }
  }, 30_000);
});

describe('JetStreamJobStore through a kill -9 of nats-server', () => {
  it('keeps every acknowledged job, result and log chunk', async () => {
    const own = await NatsServer.start();
    const nc = await connect({ servers: own.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const names = freshNames();
      const store = await JetStreamJobStore.open({ nc, box, ...names });
      const done = await store.submit(newJob(), OWNER);
      await store.assign(done.job_id, 1, NODE_A, OWNER);
      await store.markRunning(done.job_id, 1, OWNER);
      await store.appendLog(done.job_id, 1, 'stdout', 0, 'line 0', OWNER);
      await store.appendLog(done.job_id, 1, 'stdout', 1, 'line 1', OWNER);
      expect(await store.storeResult(done.job_id, 1, outcome(), METRICS, OWNER)).toBe('stored');
      const batch = await store.submitMany([newJob(), newJob({ priority: 'High' })], OWNER);
      const before = {
        done: await store.get(done.job_id),
        logs: await store.logs(done.job_id),
        batch: await Promise.all(batch.map((j) => store.get(j.job_id))),
      };

      const reconnected = nextReconnect(nc);
      await own.kill9();
      const restarted = await own.restart();
      try {
        await reconnected;
        const reopened = await JetStreamJobStore.open({ nc, box, ...names });
        expect({
          done: await reopened.get(done.job_id),
          logs: await reopened.logs(done.job_id),
          batch: await Promise.all(batch.map((j) => reopened.get(j.job_id))),
        }).toEqual(before);
        expect(before.done).toMatchObject({ state: 'Completed', result: outcome() });
        expect(before.logs.map((l) => l.data)).toEqual(['line 0', 'line 1']);
        expect((await reopened.queued()).map((j) => j.job_id)).toEqual([batch[1]!.job_id, batch[0]!.job_id]);
        expect(await reopened.storeResult(done.job_id, 1, outcome(), METRICS, OWNER)).toBe('duplicate');
        expect(await reopened.appendLog(done.job_id, 1, 'stdout', 1, 'again', OWNER)).toEqual({ status: 'duplicate' });
        expect(await reopened.appendLog(done.job_id, 1, 'stdout', 3, 'x', OWNER)).toEqual({ status: 'gap', nextSeq: 2 });
        await reopened.close();
        await store.close();
      } finally {
        await nc.close();
        await restarted.stop();
      }
    } finally {
      await own.stop();
    }
  }, 60_000);
});

describe('JetStreamJobStore submitMany through a replica killed in the middle', () => {
  it('stores all of a committed batch: any store finishes what a dead one began', async () => {
    const names = freshNames();
    const nc = await connection();
    // The bucket and streams exist before the submitter starts, so the watch below sees its commit.
    await (await JetStreamJobStore.open({ nc, box, ...names, batchRecoveryMs: 3_600_000 })).close();
    const size = 2_000;
    // Seen as the stream stores it: the batch's parts, then its commit message.
    const committed = new Promise<void>((resolve) => {
      nc.subscribe(names.batchSubject!, {
        callback: (_, msg) => {
          if ((msg.json<{ commit?: unknown }>()).commit !== undefined) resolve();
        },
      });
    });
    await nc.flush();
    const child = spawn(process.execPath, nodeArgs(SUBMITTER), {
      env: { ...process.env, NATS_URL: server.url, STORE_NAMES: JSON.stringify(names), SECRET_KEY: KEY.toString('hex'), BATCH_SIZE: String(size) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // The commit point passed (2,000 jobs need several messages): kill the replica before it is done.
    await committed;
    child.kill('SIGKILL');
    await exited;
    expect(output).not.toContain('submitted');
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(names.batchStream!)).state.messages).toBeGreaterThan(1);
    const before = await JetStreamJobStore.open({ nc, box, ...names, batchRecoveryMs: 3_600_000 });
    const createdBefore = (await before.counts()).Queued;
    await before.close();
    expect(createdBefore).toBeLessThan(size);

    // Another store, opened after the crash, finishes the batch.
    const store = await JetStreamJobStore.open({ nc, box, ...names, batchRecoveryMs: 0 });
    try {
      const counts = await store.counts();
      expect(counts.Queued).toBe(size);
      expect((await jsm.streams.info(names.batchStream!)).state.messages).toBe(0);
      const listed = await store.listJobs({}, size);
      expect(listed).toHaveLength(size);
      expect(new Set(listed.map((j) => j.job_id)).size).toBe(size);
      expect(await store.secrets(listed[0]!.job_id)).toEqual({ S: 'y' });
    } finally {
      await store.close();
    }
  }, 60_000);
});

describe('JetStreamJobStore while nats-server is down', () => {
  it('reports the failure until a write succeeds again, and follows the other replica after', async () => {
    const own = await NatsServer.start();
    const nc = await connect({ servers: own.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const other = await connect({ servers: own.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    try {
      const names = freshNames();
      const store = await JetStreamJobStore.open({ nc, box, ...names, timeoutMs: 500 });
      const peer = await JetStreamJobStore.open({ nc: other, box, ...names, timeoutMs: 500 });
      expect(store.failure()).toBeUndefined();
      await own.kill9();
      await expect(store.submit(newJob(), OWNER)).rejects.toThrow();
      expect(store.failure()).toMatch(/NATS JetStream write failed/);
      const reconnected = Promise.all([nextReconnect(nc), nextReconnect(other)]);
      const restarted = await own.restart();
      try {
        await reconnected;
        const { job_id } = await store.submit(newJob(), OWNER);
        expect(store.failure()).toBeUndefined();
        // The peer's watch was made again after its reconnect: it sees the new job.
        await expect.poll(async () => (await peer.queued()).map((j) => j.job_id), { timeout: 10_000 }).toContain(job_id);
        await store.close();
        await peer.close();
      } finally {
        await nc.close();
        await other.close();
        await restarted.stop();
      }
    } finally {
      await own.stop();
    }
  }, 60_000);
});
