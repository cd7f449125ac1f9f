// The scheduler places queued jobs by priority onto nodes with room, reads nothing when no
// node has room (a busy fleet with a backlog), stops once the last free node is full, and
// still ends queued jobs whose deadline passed. A real SQLite store, fake nodes.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import type { JobRecord } from '../../../supervisor/store/job-store.js';
import type { NodeCapacity } from '../../../supervisor/jobs/job-matcher.js';
import { Scheduler } from '../../../supervisor/jobs/scheduler.js';
import { EMBEDDED_OWNER } from '../../../supervisor/store/open-stores.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { newJob } from '../store/job-store-contract.js';

const NODE = '11111111-1111-4111-8111-111111111111';

let store: SqliteJobStore;
let scheduler: Scheduler;
let free: number;
const assigned: JobRecord[] = [];
const expired: string[] = [];

function node(): NodeCapacity {
  return {
    nodeId: NODE,
    runnerTypes: ['docker'],
    supportedJobTypes: [],
    tags: { os: 'linux' },
    maxResources: { cpu_cores: free, memory_mb: 65_536, disk_gb: 1_000 },
    used: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    runningJobs: 0,
    accepting: true,
  };
}

/** Lets the scheduler finish whatever passes were asked for. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 10));
}

beforeEach(async () => {
  store = SqliteJobStore.open(':memory:');
  assigned.length = 0;
  expired.length = 0;
  free = 0;
  scheduler = new Scheduler({
    store,
    logger: pino({ level: 'silent' }),
    // Only nodes with room are offered, as the plane does.
    capacities: () => (free > 0 ? [node()] : []),
    assign: async (job, nodeId) => {
      assigned.push(job);
      return store.assign(job.job_id, job.attempt, nodeId, EMBEDDED_OWNER);
    },
    expire: async (job) => {
      expired.push(job.job_id);
      await store.finish(job.job_id, job.attempt, 'TimedOut', 'deadline passed while queued', EMBEDDED_OWNER);
    },
  });
  scheduler.wake();
  await settle(); // the first pass reads the queue for deadlines whatever the nodes
});

afterEach(async () => {
  scheduler.stop();
  await store.close();
});

describe('Scheduler', () => {
  it('places the highest priorities first, FIFO within one, as many as the node has room for', async () => {
    const low = await store.submit(newJob({ priority: 'Low' }), EMBEDDED_OWNER);
    const normal1 = await store.submit(newJob({ priority: 'Normal' }), EMBEDDED_OWNER);
    const critical = await store.submit(newJob({ priority: 'Critical' }), EMBEDDED_OWNER);
    const normal2 = await store.submit(newJob({ priority: 'Normal' }), EMBEDDED_OWNER);
    free = 3; // one-core slots: three jobs fit
    scheduler.wake();
    await settle();
    expect(assigned.map((j) => j.job_id)).toEqual([critical.job_id, normal1.job_id, normal2.job_id]);
    expect((await store.get(low.job_id))?.state).toBe('Queued');
  });

  it('reads nothing from the store when no node has room', async () => {
    for (let i = 0; i < 20; i++) await store.submit(newJob({}), EMBEDDED_OWNER);
    const reads = vi.spyOn(store, 'queued');
    for (let i = 0; i < 10; i++) scheduler.wake();
    await settle();
    expect(reads).not.toHaveBeenCalled();
    expect(assigned).toEqual([]);
  });

  it('places no more jobs than the node has room for, and leaves the rest queued', async () => {
    for (let i = 0; i < 50; i++) await store.submit(newJob({}), EMBEDDED_OWNER);
    free = 2;
    scheduler.wake();
    await settle();
    expect(assigned).toHaveLength(2);
    expect(await store.queued()).toHaveLength(48);
  });

  it('ends a queued job whose deadline passed, even with no node free', async () => {
    const late = await store.submit(newJob({ deadline: new Date(Date.now() + 200).toISOString() }), EMBEDDED_OWNER);
    await new Promise((r) => setTimeout(r, 1_500)); // past the deadline, and past one periodic pass
    await settle();
    expect(expired).toEqual([late.job_id]);
    expect((await store.get(late.job_id))?.state).toBe('TimedOut');
  });
});
