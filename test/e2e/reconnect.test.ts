// End to end, connections that go away: a control plane restarted mid-job loses no job, and a
// real agent whose connection is cut mid-job (through a TCP proxy) resumes its session and
// delivers the result it made while disconnected, once.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_CPUS, GiveUp, Harness, TERMINAL, uniqueTag, waitFor } from './harness.js';

const h = new Harness();

afterAll(async () => {
  await h.close();
}, 60_000);

describe('control plane restart', () => {
  it('loses no job: the running one and a queued one both complete', async () => {
    const plane = await h.startPlane();
    const group = uniqueTag('restart');
    const agent = await h.startAgent(plane, { tags: { group } });
    // Each job takes every core of the agent: the second waits in the queue while the first runs.
    const whole = { cpu_cores: AGENT_CPUS };
    const running = await plane.api.submit({
      job: { command: ['sh', '-c', 'echo one; sleep 4; echo one-done'], resource_requirements: whole },
      selector: { tags: { group } },
    });
    await plane.api.waitForJob(running, 15_000, new Set(['Running']));
    const queued = await plane.api.submit({
      job: { command: ['sh', '-c', 'echo two'], resource_requirements: whole },
      selector: { tags: { group } },
    });
    expect((await plane.api.job(queued)).state).toBe('Queued');

    expect(await plane.stop()).toBe(0);
    const again = await plane.restart();
    expect(again.tcpUrl).toBe(plane.tcpUrl);

    const first = await again.api.waitForJob(running, 40_000);
    expect(first.state).toBe('Completed');
    expect(first.result?.stdout).toBe('one\none-done\n');
    // Attempt 1 resumed, or a requeued attempt 2 ran from the start: either way one full run.
    expect(await again.api.stdout(running, first.attempt)).toBe('one\none-done\n');
    const second = await again.api.waitForJob(queued, 30_000);
    expect(second).toMatchObject({ state: 'Completed', attempt: 1, result: { exit_code: 0, stdout: 'two\n' } });
    await agent.waitForStart(queued, 1);
    expect(agent.startedAttempts(queued)).toEqual([1]);
    // The agent came back as the same node.
    expect((await again.api.nodes()).map((n) => n.node_id)).toEqual([agent.nodeId]);
  }, 90_000);

  it('keeps the running job of an agent that failed to reach it many times: the agent comes back within its grace', async () => {
    const plane = await h.startPlane();
    const group = uniqueTag('long-down');
    const agent = await h.startAgent(plane, { tags: { group } });
    const gate = h.gate();
    const id = await plane.api.submit({
      job: { command: ['sh', '-c', 'echo before; while [ ! -e "$GATE" ]; do sleep 0.05; done; echo after'], environment: { GATE: gate.path } },
      selector: { tags: { group } },
    });
    await waitFor(async () => (await plane.api.stdout(id)) === 'before\n', 15_000, 'attempt 1 output');

    plane.proc.kill9();
    await plane.proc.exited;
    // Down for seven refused dials: a backoff left to grow (up to 16 s by then) would bring the
    // agent back long after the restarted plane's grace (four 500 ms heartbeat intervals).
    const refusals = (): number => agent.proc.jsonLines().filter((l) => l.msg === 'cannot reach control plane').length;
    await waitFor(() => refusals() >= 7, 30_000, 'seven refused dials');
    const again = await plane.restart();
    const registrations = (): number => agent.proc.jsonLines().filter((l) => l.msg === 'registered').length;
    await waitFor(() => registrations() >= 2, 15_000, 'the agent registered again');
    gate.open();

    const job = await again.api.waitForJob(id, 20_000);
    expect(job).toMatchObject({ state: 'Completed', attempt: 1, result: { stdout: 'before\nafter\n' } });
    expect(again.proc.jsonLines().filter((l) => l.msg === 'job withdrawn')).toEqual([]);
    expect(agent.startedAttempts(id)).toEqual([1]);
  }, 90_000);

  it('requeues a job whose node comes back too late, and the node runs the new attempt', async () => {
    const plane = await h.startPlane();
    const proxy = await h.proxy(plane.tcpUrl);
    const group = uniqueTag('late');
    const agent = await h.startAgent(plane, { url: proxy.url, tags: { group } });
    const gate = h.gate();
    // Takes every core, and runs until the test opens the gate.
    const id = await plane.api.submit({
      job: {
        command: ['sh', '-c', 'echo start; while [ ! -e "$GATE" ]; do sleep 0.05; done; echo end'],
        environment: { GATE: gate.path },
        resource_requirements: { cpu_cores: AGENT_CPUS },
      },
      selector: { tags: { group } },
    });
    await waitFor(async () => (await plane.api.stdout(id)) === 'start\n', 15_000, 'attempt 1 output');

    // The agent cannot reach the restarted plane until the plane has given up on it.
    proxy.block();
    proxy.cut();
    expect(await plane.stop()).toBe(0);
    const again = await plane.restart();
    await again.api.waitForJob(id, 20_000, new Set(['Queued']));
    expect((await again.api.job(id)).attempt).toBe(2);
    proxy.unblock();

    // Attempt 1 is still running on the agent when attempt 2 comes: the new one replaces it.
    await waitFor(
      async () => {
        if (agent.startedAttempts(id).includes(2)) return true;
        const job = await again.api.job(id);
        if (TERMINAL.has(job.state)) throw new GiveUp(`the job ended ${job.state} at attempt ${job.attempt}`);
        return false;
      },
      20_000,
      'attempt 2 started on the agent',
    );
    gate.open();
    const job = await again.api.waitForJob(id, 20_000);
    expect(job).toMatchObject({ state: 'Completed', attempt: 2, result: { exit_code: 0, stdout: 'start\nend\n' } });
    expect(await again.api.stdout(id, 2)).toBe('start\nend\n');
  }, 90_000);
});

describe('a dropped connection', () => {
  it('is resumed by the agent with its session: same node id, and the result made meanwhile is stored once', async () => {
    // Liveness long enough that the plane keeps the node through the outage.
    const plane = await h.startPlane({ env: { MUSTER_MISSED_HEARTBEATS: '20' } });
    const proxy = await h.proxy(plane.tcpUrl);
    const group = uniqueTag('cut');
    const agent = await h.startAgent(plane, { url: proxy.url, tags: { group } });
    const gate = h.gate();
    const id = await plane.api.submit({
      job: {
        command: ['sh', '-c', 'echo before; while [ ! -e "$GATE" ]; do sleep 0.05; done; echo after'],
        environment: { GATE: gate.path },
      },
      selector: { tags: { group } },
    });
    await waitFor(async () => (await plane.api.stdout(id)) === 'before\n', 15_000, 'first output');

    proxy.block();
    proxy.cut();
    // The job ends while the agent is cut off: its result waits in the agent's outbox.
    gate.open();
    const outboxFile = join(agent.workDir, '.outbox', `${id}-1.json`);
    await waitFor(() => existsSync(outboxFile), 15_000, 'result kept in the outbox');
    expect((await plane.api.job(id)).state).toBe('Running');
    proxy.unblock();

    const job = await plane.api.waitForJob(id, 30_000);
    expect(job).toMatchObject({ state: 'Completed', attempt: 1, result: { exit_code: 0, stdout: 'before\nafter\n' } });
    expect(await plane.api.stdout(id)).toBe('before\nafter\n');
    // Acked: the agent forgets the result.
    await waitFor(() => !existsSync(outboxFile), 10_000, 'outbox emptied by the ack');

    const registrations = agent.proc.jsonLines().filter((l) => l.msg === 'registered');
    expect(registrations.length).toBeGreaterThanOrEqual(2);
    expect(registrations.map((l) => l.node_id)).toEqual(registrations.map(() => agent.nodeId));
    expect(registrations.at(-1)?.resumed).toBe(true);
    const nodes = await plane.api.nodes();
    expect(nodes.filter((n) => n.node_id === agent.nodeId)).toHaveLength(1);
    expect(nodes.find((n) => n.node_id === agent.nodeId)?.state).not.toBe('dead');
    expect(agent.startedAttempts(id)).toEqual([1]);
  }, 90_000);
});
