// End to end, the session rules of PROTOCOL.md section 4 that a well-behaved agent never
// exercises, driven by a fake node over raw TCP against a real `muster serve`: an assignment
// never answered, a repeated result, a stale attempt's result, a dropped connection resumed,
// and a second connection for the same node.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, uniqueTag, waitFor, type FakeNode, type PlaneProcess } from './harness.js';

const h = new Harness();
let plane: PlaneProcess;
let registrationToken: string;

beforeAll(async () => {
  plane = await h.startPlane();
  registrationToken = await h.mintToken(plane.dataDir, 'node');
}, 30_000);

afterAll(async () => {
  await h.close();
}, 60_000);

/** A registered fake node with a tag of its own, and a job only it matches. */
async function nodeWithJob(prefix: string, maxAttempts?: number): Promise<{ node: FakeNode; tags: Record<string, string>; jobId: string }> {
  const tags = { fake: uniqueTag(prefix) };
  const node = await h.fakeNode(plane.tcpUrl);
  await node.register({ token: registrationToken, tags });
  const jobId = await plane.api.submit({
    job: { command: ['true'] },
    selector: { tags },
    ...(maxAttempts === undefined ? {} : { max_attempts: maxAttempts }),
  });
  return { node, tags, jobId };
}

describe('session rules', () => {
  it('withdraws an assignment that is never answered as attempt 2, then dead-letters it', async () => {
    const { node, jobId } = await nodeWithJob('silent', 2);
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 1);
    // No JobAccepted: after the accept timeout the plane takes it back.
    await node.next('CancelJob', (d) => d.job_id === jobId && d.attempt === 1);
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 2);
    const requeued = await plane.api.job(jobId);
    expect(requeued.attempt).toBe(2);
    await node.next('CancelJob', (d) => d.job_id === jobId && d.attempt === 2);

    const job = await plane.api.waitForJob(jobId, 15_000);
    expect(job.state).toBe('DeadLettered');
    expect(job.attempt).toBe(2);
    expect(job.result).toBeUndefined();
    expect(node.all('JobAssignment', (d) => d.job_id === jobId).map((m) => m.data.attempt)).toEqual([1, 2]);
    expect(node.invalid).toEqual([]);
  });

  it('acks a repeated JobResult twice and stores only the first', async () => {
    const { node, jobId } = await nodeWithJob('repeat');
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 1);
    node.send('JobAccepted', { job_id: jobId, attempt: 1 });
    await plane.api.waitForJob(jobId, 10_000, new Set(['Running']));

    node.sendResult(jobId, 1, { status: 'Completed', exit_code: 0, stdout: 'first\n' });
    node.sendResult(jobId, 1, { status: 'Failed', exit_code: 9, stdout: 'second\n' });
    await node.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 1);
    await node.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 1);

    const job = await plane.api.job(jobId);
    expect(job).toMatchObject({ state: 'Completed', attempt: 1, result: { status: 'Completed', exit_code: 0, stdout: 'first\n' } });
    expect(node.invalid).toEqual([]);
  });

  it('acks and discards the result of an attempt that is no longer current', async () => {
    const { node, jobId } = await nodeWithJob('stale');
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 1);
    await node.next('CancelJob', (d) => d.job_id === jobId && d.attempt === 1);
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 2);
    node.send('JobAccepted', { job_id: jobId, attempt: 2 });
    await plane.api.waitForJob(jobId, 10_000, new Set(['Running']));

    node.sendResult(jobId, 1, { status: 'Failed', exit_code: 5, stdout: 'stale\n' });
    await node.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 1);
    const meanwhile = await plane.api.job(jobId);
    expect(meanwhile.state).toBe('Running');
    expect(meanwhile.attempt).toBe(2);
    expect(meanwhile.result).toBeUndefined();

    node.sendResult(jobId, 2, { status: 'Completed', exit_code: 0, stdout: 'fresh\n' });
    await node.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 2);
    const job = await plane.api.job(jobId);
    expect(job).toMatchObject({ state: 'Completed', attempt: 2, result: { exit_code: 0, stdout: 'fresh\n' } });
    expect(node.invalid).toEqual([]);
  });

  it('resumes a dropped connection: same node id, the job kept, its logs and result stored once', async () => {
    const { node, tags, jobId } = await nodeWithJob('drop');
    const nodeId = node.nodeId!;
    await node.next('JobAssignment', (d) => d.job_id === jobId && d.attempt === 1);
    node.send('JobAccepted', { job_id: jobId, attempt: 1 });
    node.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'part-1\n' });
    await waitFor(async () => (await plane.api.stdout(jobId)) === 'part-1\n', 10_000, 'first chunk stored');
    node.drop();

    const again = await h.fakeNode(plane.tcpUrl);
    const ack = await again.register({
      token: node.sessionToken!,
      tags,
      resume: { node_id: nodeId, running_jobs: [jobId], unacked_results: [] },
    });
    expect(ack).toMatchObject({ node_id: nodeId, resumed: true });
    const views = (await plane.api.nodes()).filter((n) => n.node_id === nodeId);
    expect(views).toHaveLength(1);
    expect(views[0]?.state).not.toBe('dead');
    expect(views[0]?.running_jobs).toEqual([jobId]);
    expect(await plane.api.job(jobId)).toMatchObject({ state: 'Running', attempt: 1 });

    // Resent after the reconnect: the repeated chunk is dropped, the result stored once.
    again.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'part-1\n' });
    again.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 1, data: 'part-2\n' });
    again.sendResult(jobId, 1, { stdout: 'part-1\npart-2\n' });
    again.sendResult(jobId, 1, { stdout: 'part-1\npart-2\n' });
    await again.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 1);
    await again.next('JobResultAck', (d) => d.job_id === jobId && d.attempt === 1);
    expect(await plane.api.job(jobId)).toMatchObject({ state: 'Completed', attempt: 1, result: { stdout: 'part-1\npart-2\n' } });
    expect(await plane.api.stdout(jobId)).toBe('part-1\npart-2\n');
    expect(again.invalid).toEqual([]);
  });

  it('replaces a live connection when the node registers again, and shows the node once', async () => {
    const tags = { fake: uniqueTag('twice') };
    const first = await h.fakeNode(plane.tcpUrl);
    const ack1 = await first.register({ token: registrationToken, tags });
    const second = await h.fakeNode(plane.tcpUrl);
    const ack2 = await second.register({
      token: ack1.session_token,
      tags,
      resume: { node_id: ack1.node_id, running_jobs: [], unacked_results: [] },
    });
    expect(ack2).toMatchObject({ node_id: ack1.node_id, resumed: true });
    const replaced = await first.next('Error', (d) => d.code === 'session_replaced');
    expect(replaced.data.fatal).toBe(true);
    await waitFor(() => first.isClosed, 10_000, 'old connection closed');
    const views = (await plane.api.nodes()).filter((n) => n.node_id === ack1.node_id);
    expect(views).toHaveLength(1);
    expect(views[0]?.state).toBe('ready');
  });
});
