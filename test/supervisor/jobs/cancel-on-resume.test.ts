// A cancel requested while a node is away is carried out when it comes back: the plane stores
// the request, and the node that resumes the job is sent CancelJob (issue 7 item 3; the plane
// restarted in between is test/e2e/cancel-restart.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import type { ControlPlane } from '../../../supervisor/control-plane.js';
import type { NodeClient } from '../node-client.js';
import { startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
let plane: ControlPlane;

beforeAll(async () => {
  // The audit log tells when the plane has seen a connection close.
  p = await startSecurityPlane({}, { withAudit: true });
  plane = p.plane;
});

afterAll(async () => p?.stop());

const connect = (): Promise<NodeClient> => p.client();

describe('a cancel requested while the node is disconnected', () => {
  it('is sent to the node as CancelJob when it resumes the job, and its Cancelled result ends the job', async () => {
    const first = await connect();
    await first.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }) });
    const job = await plane.api.submitJob(toNewJob({ job: { command: ['sleep', '60'] } }, plane.api.defaults));
    expect((await first.next('JobAssignment')).message.data).toMatchObject({ job_id: job.job_id, attempt: 1 });
    first.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: 1 } });
    await until('the job runs', async () => (await plane.api.getJob(job.job_id))?.state === 'Running');

    first.destroy();
    await until('the plane sees the connection gone', () =>
      p.auditLines().some((l) => l.event === 'connection_closed' && l.node_id === first.nodeId),
    );
    const requested = await plane.api.cancelJob(job.job_id);
    expect(requested).toMatchObject({ state: 'Running', cancel_requested: true });

    const back = await connect();
    await back.register({
      token: first.sessionToken!,
      resume: { node_id: first.nodeId!, running_jobs: [job.job_id], unacked_results: [] },
    });
    const cancel = await back.next('CancelJob');
    expect(cancel.message.data).toMatchObject({ job_id: job.job_id, attempt: 1 });
    const now = new Date().toISOString();
    back.send({
      type: 'JobResult',
      id: 'r-1',
      data: {
        job_id: job.job_id,
        attempt: 1,
        node_id: back.nodeId,
        result: { status: 'Cancelled', exit_code: 143, stdout: '', stderr: '', artifacts: [], started_at: now, completed_at: now },
        metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
      },
    });
    expect((await back.next('JobResultAck')).message.data).toEqual({ job_id: job.job_id, attempt: 1 });
    expect(await plane.api.getJob(job.job_id)).toMatchObject({ state: 'Cancelled', attempt: 1 });
  });
});
