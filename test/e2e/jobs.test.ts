// End to end, the job paths a user relies on: a plane and two real agents (one over TCP, one
// over the Unix socket) run a mixed batch to the right nodes with the right output and exit
// codes; job timeout, cancel (running and queued), and `muster job submit --wait`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_CPUS, Harness, runMuster, waitFor, type AgentProcess, type PlaneProcess } from './harness.js';

const h = new Harness();
let plane: PlaneProcess;
let agentA: AgentProcess;
let agentB: AgentProcess;

beforeAll(async () => {
  plane = await h.startPlane();
  [agentA, agentB] = await Promise.all([
    h.startAgent(plane, { tags: { pool: 'a', zone: 'z1' } }),
    h.startAgent(plane, { url: plane.unixUrl, tags: { pool: 'b', zone: 'z1' } }),
  ]);
}, 60_000);

afterAll(async () => {
  await h.close();
}, 60_000);

describe('a plane with two agents', () => {
  it('runs 20 jobs of mixed priorities and selectors, each on a matching node, with its output and exit code', async () => {
    const priorities = ['Low', 'Normal', 'High', 'Critical'] as const;
    const pools = ['a', 'b', undefined] as const;
    const jobs = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const pool = pools[i % 3];
        const exitCode = i % 5 === 4 ? 3 : 0;
        const id = await plane.api.submit({
          // The job's working directory (on stderr) tells which agent ran it.
          job: { command: ['sh', '-c', `echo job-${i}; pwd >&2; exit ${exitCode}`] },
          priority: priorities[i % 4],
          ...(pool === undefined ? { selector: { tags: { zone: 'z1' } } } : { selector: { tags: { pool } } }),
        });
        return { i, id, pool, exitCode };
      }),
    );
    for (const { i, id, pool, exitCode } of jobs) {
      const job = await plane.api.waitForJob(id, 30_000);
      expect(job.state, `job ${i}`).toBe(exitCode === 0 ? 'Completed' : 'Failed');
      expect(job.attempt).toBe(1);
      expect(job.result?.exit_code).toBe(exitCode);
      expect(job.result?.stdout).toBe(`job-${i}\n`);
      expect(await plane.api.stdout(id)).toBe(`job-${i}\n`);
      const ranOn = pool === 'a' ? [agentA] : pool === 'b' ? [agentB] : [agentA, agentB];
      expect(ranOn.map((agent) => agent.jobDir(id, 1) + '\n'), `job ${i}`).toContain(job.result?.stderr);
      // The API names the node that ran it, and it is the one whose work dir the job saw.
      const ranAgent = ranOn.find((agent) => agent.jobDir(id, 1) + '\n' === job.result?.stderr);
      expect(job.node_id, `job ${i}`).toBe(ranAgent?.nodeId);
      const logs = await plane.api.logs(id);
      expect(logs.filter((c) => c.stream === 'stderr').map((c) => c.data).join('')).toBe(job.result?.stderr);
    }
    const nodes = await plane.api.nodes();
    expect(nodes.map((n) => n.node_id).sort()).toEqual([agentA.nodeId, agentB.nodeId].sort());
  }, 60_000);

  it('starts queued jobs by priority, first come first served within a priority', async () => {
    // Only a node started later matches, and each job takes all of it: they run one by one.
    const tags = { pool: 'c' };
    const whole = { cpu_cores: AGENT_CPUS };
    const priorities = ['Low', 'Normal', 'Critical', 'High', 'Low', 'Critical', 'Normal', 'High'] as const;
    const ids: string[] = [];
    for (const [i, priority] of priorities.entries()) {
      ids.push(await plane.api.submit({ job: { command: ['echo', `p${i}`], resource_requirements: whole }, priority, selector: { tags } }));
    }
    const agentC = await h.startAgent(plane, { tags });
    for (const id of ids) expect((await plane.api.waitForJob(id, 30_000)).state).toBe('Completed');
    const rank = { Critical: 0, High: 1, Normal: 2, Low: 3 };
    const expected = ids.map((id, i) => ({ id, i })).sort((a, b) => rank[priorities[a.i]] - rank[priorities[b.i]] || a.i - b.i);
    const started = await waitFor(() => {
      const order = agentC.proc.jsonLines().filter((l) => l.msg === 'job started').map((l) => String(l.job_id));
      return order.length === ids.length && order;
    }, 10_000, 'every job started on the new agent');
    expect(started).toEqual(expected.map((e) => e.id));
    await agentC.stop();
  }, 60_000);

  it('runs a job over the Unix socket listener', async () => {
    const id = await plane.api.submit({ job: { command: ['sh', '-c', 'echo over-unix; pwd >&2'] }, selector: { tags: { pool: 'b' } } });
    const job = await plane.api.waitForJob(id, 20_000);
    expect(job).toMatchObject({
      state: 'Completed',
      result: { exit_code: 0, stdout: 'over-unix\n', stderr: `${agentB.jobDir(id, 1)}\n` },
    });
    expect(await plane.api.stdout(id)).toBe('over-unix\n');
  });

  it('ends a job that runs past its timeout as TimedOut', async () => {
    const id = await plane.api.submit({
      job: { command: ['sleep', '30'], timeout: { secs: 1, nanos: 0 } },
      selector: { tags: { pool: 'a' } },
    });
    const job = await plane.api.waitForJob(id, 20_000);
    expect(job.state).toBe('TimedOut');
    expect(job.attempt).toBe(1);
    // The agent enforced it (the plane's own backstop comes 10 s later and stores no result).
    expect(job.result?.status).toBe('TimedOut');
  });

  it('cancels a running job, and a queued one at once', async () => {
    const running = await plane.api.submit({ job: { command: ['sleep', '30'] }, selector: { tags: { pool: 'a' } } });
    await plane.api.waitForJob(running, 15_000, new Set(['Running']));
    const answer = await plane.api.cancel(running);
    expect(answer.status).toBe(202);
    const cancelled = await plane.api.waitForJob(running, 15_000);
    expect(cancelled.state).toBe('Cancelled');
    expect(cancelled.result?.status).toBe('Cancelled');

    // No node has this tag: the job stays queued until cancelled.
    const queued = await plane.api.submit({ job: { command: ['true'] }, selector: { tags: { pool: 'nobody' } } });
    expect((await plane.api.job(queued)).state).toBe('Queued');
    const queuedAnswer = await plane.api.cancel(queued);
    expect(queuedAnswer.status).toBe(202);
    expect(queuedAnswer.body.state).toBe('Cancelled');
    expect((await plane.api.job(queued)).state).toBe('Cancelled');
  });

  it('`muster job submit --wait` prints the output and exits with the job\'s exit code', async () => {
    const client = ['--api', plane.httpUrl, '--data-dir', plane.dataDir];
    const run = await runMuster(['job', 'submit', ...client, '--wait', '--', 'sh', '-c', 'echo hi; exit 7']);
    expect(run.stdout).toBe('hi\n');
    expect(run.code).toBe(7);
  });
});
