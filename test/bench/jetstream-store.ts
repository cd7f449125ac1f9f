// `node --import tsx test/bench/jetstream-store.ts`: JobStore operations per second on a real
// nats-server (R1, file storage) against the raw JetStream figures measured in the same run, and
// the SQLite store on the same workload. A job here is submit, then assign → markRunning →
// storeResult (each job's steps in order, `BENCH_CONCURRENCY` jobs at a time), as the plane
// does for a trivial job. CPU time per job is given for this process and for nats-server.
import { randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { JetStreamJobStore } from '../../supervisor/cluster/jetstream-job-store.js';
import type { JobStore } from '../../supervisor/store/job-store.js';
import { SecretBox } from '../../supervisor/store/secret-box.js';
import { SqliteJobStore } from '../../supervisor/store/sqlite-job-store.js';
import { NatsServer } from '../cluster/nats-server.js';
import { METRICS, newJob, outcome } from '../supervisor/store/job-store-contract.js';
import { cpuSeconds } from './proc-stats.js';

const JOBS = Number(process.env.BENCH_JOBS ?? 4_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 256);
const RAW_OPS = Number(process.env.BENCH_RAW_OPS ?? 2_000);
const NODE = '11111111-1111-4111-8111-111111111111';
const OWNER = 1;

interface Rate {
  perSecond: number;
  cpuMsPerOp: number;
  serverCpuMsPerOp: number;
}

async function measure(ops: number, serverPid: number | undefined, run: () => Promise<void>): Promise<Rate> {
  const cpu0 = process.cpuUsage();
  const server0 = serverPid === undefined ? 0 : cpuSeconds(serverPid);
  const t0 = performance.now();
  await run();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const server = serverPid === undefined ? 0 : cpuSeconds(serverPid) - server0;
  return { perSecond: ops / seconds, cpuMsPerOp: (cpu.user + cpu.system) / 1000 / ops, serverCpuMsPerOp: (server * 1000) / ops };
}

/** Runs `work(i)` for i < n, `limit` at a time. */
async function pool(n: number, limit: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, n) }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

async function storeRates(store: JobStore, pid: number | undefined): Promise<{ submit: Rate; lifecycle: Rate; whole: Rate }> {
  const ids: string[] = [];
  const submit = await measure(JOBS, pid, () =>
    pool(JOBS, CONCURRENCY, async () => {
      ids.push((await store.submit(newJob(), OWNER)).job_id);
    }),
  );
  const lifecycle = await measure(JOBS, pid, () =>
    pool(JOBS, CONCURRENCY, async (i) => {
      const id = ids[i]!;
      if (!(await store.assign(id, 1, NODE, OWNER))) throw new Error('assign lost');
      await store.markRunning(id, 1, OWNER);
      await store.storeResult(id, 1, outcome(), METRICS, OWNER);
    }),
  );
  const whole = await measure(JOBS, pid, () =>
    pool(JOBS, CONCURRENCY, async () => {
      const { job_id } = await store.submit(newJob(), OWNER);
      await store.assign(job_id, 1, NODE, OWNER);
      await store.markRunning(job_id, 1, OWNER);
      await store.storeResult(job_id, 1, outcome(), METRICS, OWNER);
    }),
  );
  return { submit, lifecycle, whole };
}

const fmt = (r: Rate): string =>
  `${Math.round(r.perSecond).toString().padStart(6)}/s   CPU ${r.cpuMsPerOp.toFixed(3)} ms/op here, ${r.serverCpuMsPerOp.toFixed(3)} ms/op nats-server`;

async function main(): Promise<void> {
  const server = await NatsServer.start();
  // noAsyncTraces: nats.js otherwise builds two Error objects (stack traces) per request.
  const nc = await connect({ servers: server.url, noAsyncTraces: process.env.BENCH_ASYNC_TRACES !== '1' });
  try {
    const js = jetstream(nc);
    const kv = await new Kvm(js).create('bench-raw', { history: 1 });
    const payload = new Uint8Array(1_500);
    const publishes = await measure(RAW_OPS, server.pid, async () => {
      for (let i = 0; i < RAW_OPS; i++) await js.publish('$KV.bench-raw.seq', payload);
    });
    let revision = await kv.put('cas', payload);
    const cas = await measure(RAW_OPS, server.pid, async () => {
      for (let i = 0; i < RAW_OPS; i++) revision = await kv.update('cas', payload, revision);
    });
    const pipelined = await measure(RAW_OPS * 4, server.pid, () =>
      pool(RAW_OPS * 4, CONCURRENCY, async (i) => {
        await kv.put(`k${i}`, payload);
      }),
    );
    console.log(`raw JetStream, sequential publish      ${fmt(publishes)}`);
    console.log(`raw KV compare-and-set, sequential      ${fmt(cas)}`);
    console.log(`raw KV put, ${CONCURRENCY} in flight           ${fmt(pipelined)}`);

    const store = await JetStreamJobStore.open({ nc, box: SecretBox.fromKey(randomBytes(32)) });
    const jet = await storeRates(store, server.pid);
    await store.close();
    console.log(`\nJetStreamJobStore (${JOBS} jobs, ${CONCURRENCY} in flight)`);
    console.log(`  submit                                ${fmt(jet.submit)}`);
    console.log(`  assign → markRunning → storeResult   ${fmt(jet.lifecycle)}  (per job)`);
    console.log(`  whole job (4 writes)                  ${fmt(jet.whole)}  (per job)`);

    if (process.env.BENCH_SQLITE === '0') return;
    const sqlite = SqliteJobStore.open(':memory:');
    const lite = await storeRates(sqlite, undefined);
    await sqlite.close();
    console.log(`\nSqliteJobStore :memory: (same workload)`);
    console.log(`  submit                                ${fmt(lite.submit)}`);
    console.log(`  assign → markRunning → storeResult   ${fmt(lite.lifecycle)}  (per job)`);
    console.log(`  whole job (4 writes)                  ${fmt(lite.whole)}  (per job)`);
  } finally {
    await nc.close();
    await server.stop();
  }
}

await main();
