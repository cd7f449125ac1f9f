// The circuit breaker (issue 13 item 5): a node that rejects every job is benched after
// `breakerFailures` in a row and gets no job while benched (another node takes the work), the
// API and `muster nodes` say until when and why, an operator can lift it, and a completed job
// resets its count. Raw protocol clients over real TCP play the nodes. The breaker's timing
// (cool-offs doubling to a ceiling) runs on fake timers below.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { nodesTable } from '../../../cli/nodes-command.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import { NodeBreaker } from '../../../supervisor/jobs/node-breaker.js';
import { jobResultMessage } from '../node-client.js';
import { startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
beforeAll(async () => {
  p = await startSecurityPlane({ breakerFailures: 2, breakerCooloffMs: 600_000, breakerMaxCooloffMs: 600_000, retryBackoffMs: 0 });
});
afterAll(async () => p?.stop());

async function view(nodeId: string): Promise<NodeView> {
  const answer = await p.http('GET', '/v1/nodes', await p.apiToken('viewer'));
  return (answer.json as NodeView[]).find((n) => n.node_id === nodeId)!;
}

describe('a node whose attempts keep failing', () => {
  it('is benched, takes no job meanwhile, shows why, and comes back when an operator lifts it', async () => {
    const tags = { breaker: randomUUID() };
    const token = await p.registrationToken();
    const a = await p.client();
    await a.register({ token, tags });
    const first = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags }, max_attempts: 5 }, p.plane.api.defaults));
    for (const attempt of [1, 2]) {
      expect((await a.next('JobAssignment')).message.data).toMatchObject({ job_id: first.job_id, attempt });
      a.send({ type: 'JobRejected', data: { job_id: first.job_id, attempt, reason: 'broken docker daemon' } });
    }
    await until('node a is benched', async () => (await view(a.nodeId!)).benched_until !== undefined);
    const benched = await view(a.nodeId!);
    expect(benched.benched_reason).toBe('rejected: broken docker daemon');
    expect(Date.parse(benched.benched_until!)).toBeGreaterThan(Date.now() + 500_000);
    expect(nodesTable([benched], new Date())).toContain('ready (benched for');

    // Another node takes the waiting attempt, and the next job too, though a is idle.
    const b = await p.client();
    await b.register({ token, tags });
    expect((await b.next('JobAssignment')).message.data).toMatchObject({ job_id: first.job_id, attempt: 3 });
    b.send({ type: 'JobAccepted', data: { job_id: first.job_id, attempt: 3 } });
    b.send(jobResultMessage(b.nodeId, first.job_id, 3));
    await b.next('JobResultAck');
    const second = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags } }, p.plane.api.defaults));
    expect((await b.next('JobAssignment')).message.data).toMatchObject({ job_id: second.job_id, attempt: 1 });
    expect(a.unread().filter((r) => r.message.type === 'JobAssignment')).toEqual([]);

    const operator = await p.apiToken('operator');
    expect((await p.http('POST', `/v1/nodes/${a.nodeId}/unbench`, operator)).status).toBe(200);
    expect((await p.http('POST', `/v1/nodes/${a.nodeId}/unbench`, operator)).status).toBe(409);
    expect((await view(a.nodeId!)).benched_until).toBeUndefined();
    const third = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags } }, p.plane.api.defaults));
    expect((await a.next('JobAssignment')).message.data).toMatchObject({ job_id: third.job_id, attempt: 1 });
  });
});

describe('NodeBreaker', () => {
  afterEach(() => vi.useRealTimers());
  const policy = { breakerFailures: 3, breakerCooloffMs: 30_000, breakerMaxCooloffMs: 100_000 };

  it('benches after failures in a row, doubling each bench up to the ceiling, and tells the node feed', () => {
    vi.useFakeTimers();
    const told: string[] = [];
    const breaker = new NodeBreaker(policy, undefined, () => Date.now());
    breaker.follow('n', () => told.push(breaker.benched('n') === undefined ? 'back' : 'benched'));
    const benchFor = (): number => {
      for (let i = 0; i < 3; i++) breaker.failed('n', 'accept timeout');
      return breaker.benched('n')!.until - Date.now();
    };
    expect(benchFor()).toBe(30_000);
    vi.advanceTimersByTime(30_000);
    expect(breaker.benched('n')).toBeUndefined();
    expect(benchFor()).toBe(60_000);
    vi.advanceTimersByTime(60_000);
    expect(benchFor()).toBe(100_000);
    expect(told).toEqual(['benched', 'back', 'benched', 'back', 'benched']);
  });

  it('forgives everything on a completed job: the count and the doubling start again', () => {
    vi.useFakeTimers();
    const breaker = new NodeBreaker(policy);
    breaker.failed('n', 'x');
    breaker.failed('n', 'x');
    breaker.succeeded('n');
    breaker.failed('n', 'x');
    breaker.failed('n', 'x');
    expect(breaker.benched('n')).toBeUndefined();
    breaker.failed('n', 'x');
    expect(breaker.benched('n')!.until - Date.now()).toBe(30_000);
    breaker.succeeded('n');
    expect(breaker.benched('n')).toBeUndefined();
    for (let i = 0; i < 3; i++) breaker.failed('n', 'x');
    expect(breaker.benched('n')!.until - Date.now()).toBe(30_000);
  });
});
