// The JetStream job store against the JobStore contract on a real nats-server, plus what only a
// cluster store promises: two stores racing for one job, and a server killed and restarted.
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JetStreamJobStore, type JetStreamJobStoreOptions } from '../../../supervisor/cluster/jetstream-job-store.js';
import { SecretBox } from '../../../supervisor/store/secret-box.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { METRICS, OWNER, jobStoreContract, newJob, outcome } from '../store/job-store-contract.js';

let server: NatsServer;
const connections: NatsConnection[] = [];
const box = SecretBox.fromKey(randomBytes(32));

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
        const [wonA, wonB] = await Promise.all([a.assign(job_id, 1, NODE_A, OWNER), b.assign(job_id, 1, NODE_B, OWNER + 1)]);
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
