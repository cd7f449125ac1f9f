// End to end, losing a node: an agent killed with `kill -9` mid-job has its job finished by
// another agent as attempt 2; a drained agent finishes what it runs and gets nothing new.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, uniqueTag, waitFor, type AgentProcess, type PlaneProcess } from './harness.js';

const h = new Harness();
let plane: PlaneProcess;

beforeAll(async () => {
  plane = await h.startPlane();
}, 30_000);

afterAll(async () => {
  await h.close();
}, 60_000);

async function twoAgents(group: string): Promise<[AgentProcess, AgentProcess]> {
  const [a, b] = await Promise.all([h.startAgent(plane, { tags: { group } }), h.startAgent(plane, { tags: { group } })]);
  return [a, b];
}

/** The agent that started `attempt` of the job, once one has. */
function runnerOf(agents: AgentProcess[], jobId: string, attempt: number): Promise<AgentProcess> {
  return waitFor(() => agents.find((a) => a.startedAttempts(jobId).includes(attempt)), 15_000, `agent running ${jobId}#${attempt}`);
}

describe('node failure', () => {
  it('requeues the job of an agent killed with kill -9 to the other agent as attempt 2', async () => {
    const group = uniqueTag('kill');
    const agents = await twoAgents(group);
    const id = await plane.api.submit({ job: { command: ['sh', '-c', 'echo start; sleep 3; echo done'] }, selector: { tags: { group } } });
    await plane.api.waitForJob(id, 15_000, new Set(['Running']));
    const victim = await runnerOf(agents, id, 1);
    const survivor = agents.find((a) => a !== victim)!;
    // The job is under way on the victim: its first line is stored.
    await waitFor(async () => (await plane.api.stdout(id, 1)) === 'start\n', 10_000, 'first output of attempt 1');
    victim.kill9();

    const job = await plane.api.waitForJob(id, 30_000);
    expect(job.state).toBe('Completed');
    expect(job.attempt).toBe(2);
    expect(job.result?.stdout).toBe('start\ndone\n');
    await survivor.waitForStart(id, 2);
    expect(survivor.startedAttempts(id)).toEqual([2]);
    expect(await plane.api.stdout(id, 2)).toBe('start\ndone\n');
    expect((await plane.api.node(victim.nodeId))?.state).toBe('dead');
  }, 60_000);
});

describe('drain', () => {
  it('lets a drained node finish its running job and gives new jobs to the other node', async () => {
    const group = uniqueTag('drain');
    const agents = await twoAgents(group);
    const first = await plane.api.submit({ job: { command: ['sh', '-c', 'sleep 1.5; echo first'] }, selector: { tags: { group } } });
    const drained = await runnerOf(agents, first, 1);
    const other = agents.find((a) => a !== drained)!;

    expect((await plane.api.drain(drained.nodeId)).status).toBe(202);
    await waitFor(async () => (await plane.api.node(drained.nodeId))?.state === 'draining', 10_000, 'node draining');

    const firstJob = await plane.api.waitForJob(first, 20_000);
    expect(firstJob.state).toBe('Completed');
    expect(firstJob.result?.stdout).toBe('first\n');
    expect(drained.startedAttempts(first)).toEqual([1]);

    // Load the other node, so that the scheduler would prefer the idle drained one if it could.
    const blocker = await plane.api.submit({ job: { command: ['sleep', '3'] }, selector: { tags: { group } } });
    await plane.api.waitForJob(blocker, 15_000, new Set(['Running']));
    const after = await plane.api.submit({ job: { command: ['sh', '-c', 'echo after-drain'] }, selector: { tags: { group } } });
    const afterJob = await plane.api.waitForJob(after, 20_000);
    expect(afterJob.state).toBe('Completed');
    expect(afterJob.result?.stdout).toBe('after-drain\n');
    await other.waitForStart(after, 1);
    expect(other.startedAttempts(after)).toEqual([1]);
    expect(other.startedAttempts(blocker)).toEqual([1]);
    expect(drained.startedAttempts(after)).toEqual([]);
    expect(drained.startedAttempts(blocker)).toEqual([]);
    expect((await plane.api.node(drained.nodeId))?.state).toBe('draining');
    await plane.api.waitForJob(blocker, 20_000);
  }, 60_000);
});
