// Pipelines through the admin API of a real plane (PROTOCOL.md section 7, issue 9 item 4):
// a batch of 1,000 jobs in one request under the default limits, stored all or none; job
// listing with filters and cursor paging that gives every job once while jobs are added;
// a job's attempts; retry of a job that ended; polling hundreds of times a second.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttemptAnswer, BatchSubmitAnswer, JobAnswer, JobListAnswer, JobMoveAnswer } from '../../../supervisor/admin/wire-types.js';
import type { NodeClient } from '../node-client.js';
import { startSecurityPlane, type HttpAnswer, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
let operator: string;
let viewer: string;

beforeAll(async () => {
  // The defaults of config.ts, rate limits included: nothing is loosened for this test.
  p = await startSecurityPlane();
  [operator, viewer] = await Promise.all([p.apiToken('operator'), p.apiToken('viewer')]);
});

afterAll(async () => p?.stop());

/** A job only nodes with `tags` take; with a few variables and a command as CI systems send. */
function pipelineJob(i: number, tags: Record<string, string>, priority?: string): Record<string, unknown> {
  return {
    job: {
      name: `step-${i}`,
      command: ['sh', '-c', `make test SHARD=${i}`],
      environment: { CI: 'true', SHARD: String(i), GIT_SHA: 'a'.repeat(40) },
    },
    execution_context: { pipeline_id: 'pl-1', build_number: 42, git_ref: 'refs/heads/main' },
    selector: { tags },
    ...(priority === undefined ? {} : { priority }),
  };
}

const unmatched = (): Record<string, string> => ({ pipeline: randomUUID() });

async function submitBatch(jobs: unknown[], token = operator): Promise<HttpAnswer> {
  return p.http('POST', '/v1/jobs', token, { jobs });
}

async function list(query: string, token = viewer): Promise<JobListAnswer> {
  const answer = await p.http('GET', `/v1/jobs${query}`, token);
  expect(answer.status, answer.text).toBe(200);
  return answer.json as JobListAnswer;
}

async function countJobs(): Promise<number> {
  return Object.entries(await p.plane.api.stats())
    .filter(([k]) => k.startsWith('jobs_'))
    .reduce((n, [, v]) => n + v, 0);
}

/**
 * A node with its own tags, registered; jobs for those tags go to it alone. Such jobs are sent
 * `Critical`: a scheduler pass reads the head of the queue, which the unplaceable batches here fill.
 */
async function node(): Promise<{ c: NodeClient; tags: Record<string, string> }> {
  const tags = { pipeline: randomUUID() };
  const c = await p.client();
  await c.register({ token: await p.registrationToken(), tags });
  return { c, tags };
}

function jobResult(c: NodeClient, jobId: string, attempt: number, status: 'Completed' | 'Failed'): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    type: 'JobResult',
    id: `r-${attempt}`,
    data: {
      job_id: jobId,
      attempt,
      node_id: c.nodeId,
      result: { status, exit_code: status === 'Completed' ? 0 : 2, stdout: status, stderr: '', artifacts: [], started_at: now, completed_at: now },
      metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
    },
  };
}

describe('POST /v1/jobs with {jobs: [...]}', () => {
  it('stores a 1,000-job pipeline from one request and answers the ids in order', async () => {
    const tags = unmatched();
    const answer = await submitBatch(Array.from({ length: 1_000 }, (_, i) => pipelineJob(i, tags)));
    expect(answer.status, answer.text).toBe(201);
    const { job_ids: ids } = answer.json as BatchSubmitAnswer;
    expect(ids).toHaveLength(1_000);
    expect(new Set(ids).size).toBe(1_000);
    // In order: the i-th id is the i-th job sent.
    for (const i of [0, 1, 500, 999]) expect((await p.plane.api.getJob(ids[i]!))?.job.name).toBe(`step-${i}`);
    const newest = await list('?limit=1000');
    expect(newest.jobs.map((j) => j.job_id)).toEqual([...ids].reverse());
    expect(newest.jobs[0]).toMatchObject({ state: 'Queued', attempt: 1, priority: 'Normal' });
  });

  it('stores nothing when one job is invalid, and names its index', async () => {
    const before = await countJobs();
    const jobs = Array.from({ length: 5 }, (_, i) => pipelineJob(i, unmatched()));
    (jobs[3]!.job as Record<string, unknown>).command = [];
    const answer = await submitBatch(jobs);
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ error: { code: 'invalid_request', field: 'jobs[3].job.command' } });
    expect(await countJobs()).toBe(before);

    const bad = await submitBatch([pipelineJob(0, unmatched()), { ...pipelineJob(1, unmatched()), priority: 'Urgent' }]);
    expect(bad.json).toMatchObject({ error: { field: 'jobs[1].priority' } });
    const notAJob = await submitBatch([pipelineJob(0, unmatched()), 'make test']);
    expect(notAJob.json).toMatchObject({ error: { field: 'jobs[1]' } });
    expect(await countJobs()).toBe(before);
  });

  it('takes 1 to 1,000 jobs: an empty batch, 1,001 jobs or a non-array are refused', async () => {
    const before = await countJobs();
    for (const jobs of [[], Array.from({ length: 1_001 }, (_, i) => pipelineJob(i, unmatched())), 'all']) {
      const answer = await p.http('POST', '/v1/jobs', operator, { jobs });
      expect(answer.status).toBe(400);
      expect(answer.json).toMatchObject({ error: { code: 'invalid_request', field: 'jobs' } });
    }
    expect(await countJobs()).toBe(before);
  });

  it('needs the operator role, as a single submission does', async () => {
    expect((await submitBatch([pipelineJob(0, unmatched())], viewer)).status).toBe(403);
  });
});

describe('GET /v1/jobs', () => {
  it('filters by state, node and priority, newest first, 100 by default', async () => {
    const { c, tags } = await node();
    const ids = ((await submitBatch([pipelineJob(0, tags, 'Critical'), pipelineJob(1, unmatched(), 'Low')])).json as BatchSubmitAnswer).job_ids;
    const placed = await c.next('JobAssignment');
    expect(placed.message.data.job_id).toBe(ids[0]);
    expect((await list(`?node_id=${c.nodeId}`)).jobs.map((j) => j.job_id)).toEqual([ids[0]]);
    expect((await list(`?state=Assigned&node_id=${c.nodeId}`)).jobs.map((j) => j.state)).toEqual(['Assigned']);
    expect((await list('?state=Running')).jobs).toEqual([]);
    const low = (await list('?priority=Low&state=Queued')).jobs;
    expect(low[0]?.job_id).toBe(ids[1]);
    expect(low.every((j) => j.priority === 'Low' && j.state === 'Queued')).toBe(true);
    // Over 1,000 jobs are stored by now: a page without `limit` holds 100.
    const page = await list('');
    expect(page.jobs).toHaveLength(100);
    expect(page.jobs[0]?.job_id).toBe(ids[1]);
    expect(page.next_cursor).toEqual(expect.any(String));
    // Secrets never leave, in a list as in a single answer.
    expect(page.jobs.every((j: JobAnswer) => Object.values(j.execution_context.secrets).every((v) => v === '***'))).toBe(true);
  });

  it('refuses a bad state, priority, limit or cursor with the parameter named', async () => {
    for (const [query, field] of [
      ['?state=Done', 'state'],
      ['?priority=Urgent', 'priority'],
      ['?limit=0', 'limit'],
      ['?limit=1001', 'limit'],
      ['?limit=ten', 'limit'],
      ['?cursor=abc', 'cursor'],
      ['?state=Queued&state=Running', 'state'],
    ] as const) {
      const answer = await p.http('GET', `/v1/jobs${query}`, viewer);
      expect(answer.status, query).toBe(400);
      expect(answer.json, query).toMatchObject({ error: { code: 'invalid_request', field } });
    }
  });

  it('pages through every job exactly once while jobs are being submitted', async () => {
    const tags = unmatched();
    const ids = ((await submitBatch(Array.from({ length: 230 }, (_, i) => pipelineJob(i, tags)))).json as BatchSubmitAnswer).job_ids;
    const seen: string[] = [];
    const added: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await list(`?limit=40${cursor === undefined ? '' : `&cursor=${cursor}`}`);
      seen.push(...page.jobs.map((j) => j.job_id));
      cursor = page.next_cursor;
      // Between pages, more jobs arrive (newer than every job being paged through).
      const more = await submitBatch([pipelineJob(0, tags), pipelineJob(1, tags)]);
      added.push(...(more.json as BatchSubmitAnswer).job_ids);
    } while (cursor !== undefined);
    expect(new Set(seen).size).toBe(seen.length);
    // Every job there when paging began, newest first, then the older ones from the tests above.
    expect(seen.slice(0, ids.length)).toEqual([...ids].reverse());
    expect(seen).not.toContain(added[0]);
    // The first page of a new listing starts with the newest.
    expect((await list('?limit=1')).jobs[0]?.job_id).toBe(added.at(-1));
  });

  it('answers a few hundred polls a second from one token under the default rate limit', async () => {
    const jobId = (await list('?limit=1')).jobs[0]!.job_id;
    const answers = await Promise.all(Array.from({ length: 300 }, () => p.http('GET', `/v1/jobs/${jobId}`, viewer)));
    expect(answers.filter((a) => a.status !== 200).map((a) => a.status)).toEqual([]);
  });
});

describe('GET /v1/jobs/{id}/attempts and POST /v1/jobs/{id}/retry', () => {
  it('shows each attempt, and runs a failed job again as its next attempt', async () => {
    const { c, tags } = await node();
    const jobId = ((await submitBatch([pipelineJob(0, tags, 'Critical')])).json as BatchSubmitAnswer).job_ids[0]!;
    await c.next('JobAssignment');
    c.send({ type: 'JobRejected', data: { job_id: jobId, attempt: 1, reason: 'disk full' } });
    expect((await c.next('JobAssignment')).message.data).toMatchObject({ job_id: jobId, attempt: 2 });
    c.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 2 } });
    c.send(jobResult(c, jobId, 2, 'Failed'));
    await c.next('JobResultAck');

    const attempts = await p.http('GET', `/v1/jobs/${jobId}/attempts`, viewer);
    expect(attempts.status).toBe(200);
    expect(attempts.json).toMatchObject([
      { attempt: 1, node_id: c.nodeId, outcome: 'Withdrawn', reason: 'rejected: disk full' },
      { attempt: 2, node_id: c.nodeId, outcome: 'Failed', accepted_at: expect.any(String), ended_at: expect.any(String) },
    ]);
    expect((attempts.json as AttemptAnswer[])[0]!.accepted_at).toBeUndefined();

    const retried = await p.http('POST', `/v1/jobs/${jobId}/retry`, operator);
    expect(retried.status).toBe(202);
    expect(retried.json).toEqual({ job_id: jobId, state: 'Queued', attempt: 3 } satisfies JobMoveAnswer);
    expect((await c.next('JobAssignment')).message.data).toMatchObject({ job_id: jobId, attempt: 3 });
    c.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 3 } });
    c.send(jobResult(c, jobId, 3, 'Completed'));
    await c.next('JobResultAck');
    expect(await p.plane.api.getJob(jobId)).toMatchObject({ state: 'Completed', attempt: 3, result: { stdout: 'Completed' } });
    expect(((await p.http('GET', `/v1/jobs/${jobId}/attempts`, viewer)).json as AttemptAnswer[]).map((a) => a.outcome)).toEqual([
      'Withdrawn',
      'Failed',
      'Completed',
    ]);
  });

  it('answers 409 for a job queued, running or Completed, 404 for none, 403 for a viewer', async () => {
    const { c, tags } = await node();
    const [running, queued] = ((await submitBatch([pipelineJob(0, tags, 'Critical'), pipelineJob(1, unmatched())])).json as BatchSubmitAnswer)
      .job_ids;
    await c.next('JobAssignment');
    c.send({ type: 'JobAccepted', data: { job_id: running, attempt: 1 } });
    for (const id of [queued, running]) {
      const answer = await p.http('POST', `/v1/jobs/${id}/retry`, operator);
      expect(answer.status).toBe(409);
      expect(answer.json).toMatchObject({ error: { code: 'conflict' } });
    }
    c.send(jobResult(c, running!, 1, 'Completed'));
    await c.next('JobResultAck');
    expect((await p.http('POST', `/v1/jobs/${running}/retry`, operator)).status).toBe(409);
    expect((await p.http('POST', `/v1/jobs/${randomUUID()}/retry`, operator)).status).toBe(404);
    expect((await p.http('GET', `/v1/jobs/${randomUUID()}/attempts`, viewer)).status).toBe(404);
    expect((await p.http('POST', `/v1/jobs/${queued}/cancel`, operator)).status).toBe(202);
    expect((await p.http('POST', `/v1/jobs/${queued}/retry`, viewer)).status).toBe(403);
    expect((await p.http('POST', `/v1/jobs/${queued}/retry`, operator)).json).toMatchObject({ state: 'Queued', attempt: 2 });
  });
});
