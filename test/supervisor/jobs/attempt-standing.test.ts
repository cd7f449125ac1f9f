// A node's own stale attempt is not a forgery (README "Jobs"): a node that held attempt 1 of a
// job which the plane took back keeps PROTOCOL.md 4 rule 5 — its late JobAccepted is answered
// with CancelJob, its JobResult is acked and discarded, its JobRejected ignored, its log chunks
// kept under attempt 1 — and it is never answered invalid_message nor audited. (A node that
// never held the attempt: the forged rows of bad-input-catalogue.test.ts.)
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';
import { jobResultMessage } from '../node-client.js';

let p: SecurityPlane;

beforeAll(async () => {
  // A short accept timeout takes attempt 1 back from a node that does not answer in time.
  p = await startSecurityPlane({ acceptTimeoutMs: 500 }, { withAudit: true });
});

afterAll(async () => p?.stop());

describe('a node that sends messages for its own attempt after the plane took it back', () => {
  it('gets the answers of PROTOCOL.md 4 rule 5, never invalid_message, and the job is unchanged', async () => {
    const tags = { standing: randomUUID() };
    const c = await p.client();
    await c.register({ token: await p.registrationToken(), tags });
    const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags } }, p.plane.api.defaults));
    const jobId = job.job_id;
    await c.next('JobAssignment');
    // Not answered in time: withdrawn, and attempt 2 comes to the same node.
    expect((await c.next('CancelJob')).message.data).toMatchObject({ job_id: jobId, attempt: 1 });
    expect((await c.next('JobAssignment')).message.data).toMatchObject({ job_id: jobId, attempt: 2 });
    c.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 2 } });
    await until('attempt 2 runs', async () => (await p.plane.api.getJob(jobId))?.state === 'Running');

    c.send({ type: 'JobAccepted', id: 'late-accept', data: { job_id: jobId, attempt: 1 } });
    expect((await c.next('CancelJob')).message.data).toMatchObject({ job_id: jobId, attempt: 1, reason: 'attempt is no longer current' });
    c.send({ type: 'JobRejected', data: { job_id: jobId, attempt: 1, reason: 'late' } });
    c.send({ type: 'LogChunk', data: { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'from attempt 1' } });
    c.send(jobResultMessage(c.nodeId, jobId, 1, 'Completed', 'stale', 'r-1-stale'));
    expect((await c.next('JobResultAck')).message.data).toEqual({ job_id: jobId, attempt: 1 });
    expect(await p.plane.api.getJob(jobId)).toMatchObject({ state: 'Running', attempt: 2, node_id: c.nodeId });
    expect((await p.plane.api.getJob(jobId))?.result).toBeUndefined();
    expect((await p.plane.api.jobLogs(jobId))?.map((l) => [l.attempt, l.data])).toEqual([[1, 'from attempt 1']]);

    c.send(jobResultMessage(c.nodeId, jobId, 2, 'Completed', 'fresh', 'r-2-fresh'));
    expect((await c.next('JobResultAck')).message.data).toEqual({ job_id: jobId, attempt: 2 });
    expect(await p.plane.api.getJob(jobId)).toMatchObject({ state: 'Completed', attempt: 2, result: { stdout: 'fresh' } });
    // A repeat of a stored result, after the job ended: acked again, nothing changes.
    c.send(jobResultMessage(c.nodeId, jobId, 2, 'Completed', 'repeat', 'r-2-repeat'));
    expect((await c.next('JobResultAck')).message.data).toEqual({ job_id: jobId, attempt: 2 });
    expect((await p.plane.api.getJob(jobId))?.result?.stdout).toBe('fresh');

    expect(c.unread().filter((m) => m.message.type === 'Error')).toEqual([]);
    expect(p.auditLines().filter((l) => l.event === 'attempt_refused')).toEqual([]);
  });
});
