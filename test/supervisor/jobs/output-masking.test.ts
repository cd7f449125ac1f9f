// PROTOCOL.md section 4 rule 11, the plane's half: a node written elsewhere that sends a job's
// secret in its output (whole, split across two chunks of one stream, at the very end of a
// stream, in its result) has every exact value stored and served as `***`. A raw protocol
// client over real TCP plays that node; the agent, which masks on its own, is not used.
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { startSecurityPlane, until, type SecurityPlane } from '../security-plane.js';
import { OutputMasks } from '../../../supervisor/jobs/output-masks.js';

const SECRET = 'hunter2-Zq9';
const OTHER = 'pa55-word';

let p: SecurityPlane;
beforeAll(async () => {
  p = await startSecurityPlane();
});
afterAll(async () => p?.stop());

function resultMessage(nodeId: string | undefined, jobId: string, stdout: string, stderr: string): Record<string, unknown> {
  const now = new Date().toISOString();
  return {
    type: 'JobResult',
    id: 'r-1',
    data: {
      job_id: jobId,
      attempt: 1,
      node_id: nodeId,
      result: { status: 'Completed', exit_code: 0, stdout, stderr, artifacts: [], started_at: now, completed_at: now },
      metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
    },
  };
}

describe('the plane masks secrets a node leaves in its output', () => {
  it('stores and serves *** for whole, split, trailing and result values, keeping the text around them', async () => {
    const tags = { masking: randomUUID() };
    const c = await p.client();
    await c.register({ token: await p.registrationToken(), tags });
    const job = await p.plane.api.submitJob(
      toNewJob({ job: { command: ['true'] }, selector: { tags }, execution_context: { secrets: { A: SECRET, B: OTHER } } }, p.plane.api.defaults),
    );
    const jobId = job.job_id;
    expect((await c.next('JobAssignment')).message.data).toMatchObject({ job_id: jobId, execution_context: { secrets: { A: SECRET, B: OTHER } } });
    c.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 1 } });
    const chunk = (stream: string, seq: number, data: string): void =>
      c.send({ type: 'LogChunk', data: { job_id: jobId, attempt: 1, stream, seq, data } });
    chunk('stdout', 0, `whole ${SECRET} here; split hun`);
    chunk('stdout', 1, `ter2-Zq9 done; ends with pa5`);
    chunk('stderr', 0, `err ${OTHER}`);
    // Repeat of chunk 1: dropped by the store, and it must not disturb the held tail.
    chunk('stdout', 1, `ter2-Zq9 done; ends with pa5`);
    c.send(resultMessage(c.nodeId, jobId, `out ${SECRET}`, `${OTHER}!`));
    await c.next('JobResultAck');

    const logs = (await p.plane.api.jobLogs(jobId)) ?? [];
    const text = (stream: string): string => logs.filter((l) => l.stream === stream).map((l) => l.data).join('');
    expect(text('stdout')).toBe('whole *** here; split *** done; ends with pa5');
    expect(text('stderr')).toBe('err ***');
    const served = await p.http('GET', `/v1/jobs/${jobId}/logs`, await p.apiToken('viewer'));
    expect(served.text).not.toContain(SECRET);
    expect(served.text).not.toContain(OTHER);
    await until('the job is stored as completed', async () => (await p.plane.api.getJob(jobId))?.state === 'Completed');
    const record = await p.plane.api.getJob(jobId);
    expect(record?.result).toMatchObject({ stdout: 'out ***', stderr: '***!' });
  });

  it('leaves the output of a job without secrets exactly as sent', async () => {
    const tags = { masking: randomUUID() };
    const c = await p.client();
    await c.register({ token: await p.registrationToken(), tags });
    const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags } }, p.plane.api.defaults));
    await c.next('JobAssignment');
    c.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: 1 } });
    c.send({ type: 'LogChunk', data: { job_id: job.job_id, attempt: 1, stream: 'stdout', seq: 0, data: 'hun' } });
    c.send(resultMessage(c.nodeId, job.job_id, 'hunter2-Zq9', ''));
    await c.next('JobResultAck');
    expect((await p.plane.api.jobLogs(job.job_id))?.map((l) => l.data)).toEqual(['hun']);
    expect((await p.plane.api.getJob(job.job_id))?.result?.stdout).toBe('hunter2-Zq9');
  });
});

describe('OutputMasks', () => {
  it('masks a secret split over three chunks, and lets a chunk out of order through masked whole', () => {
    const masks = OutputMasks.of({ S: 'abcdef' })!;
    expect(masks.chunk('stdout', 0, 'xab')).toBe('x');
    expect(masks.chunk('stdout', 1, 'cd')).toBe('');
    expect(masks.chunk('stdout', 5, 'abcdef!')).toBe('***!');
    expect(masks.chunk('stdout', 2, 'efy')).toBe('***y');
    expect(masks.end()).toEqual([]);
  });

  it('hands back a held tail at the end, with the next seq of its stream', () => {
    const masks = OutputMasks.of({ S: 'abcdef' })!;
    expect(masks.chunk('stderr', 3, 'zzabc')).toBe('zz');
    expect(masks.end()).toEqual([{ stream: 'stderr', seq: 4, data: 'abc' }]);
  });

  it('starts a stream over when the store did not take the chunk that set its sequence', () => {
    const masks = OutputMasks.of({ S: 'abcdef' })!;
    expect(masks.chunk('stdout', 7, 'old ab')).toBe('old ');
    masks.settled('stdout', 7, false);
    expect(masks.chunk('stdout', 9, 'cdef')).toBe('cdef');
    expect(OutputMasks.of({})).toBeUndefined();
  });
  it('stores no secret of a stream however it is cut into chunks, overlapping secrets and held tails included', () => {
    const word = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '-'), minLength: 1, maxLength: 6 });
    const cases = fc.array(word, { minLength: 1, maxLength: 5 }).chain((values) =>
      fc.tuple(
        fc.constant(values),
        fc.array(fc.oneof(fc.constantFrom(...values), word), { maxLength: 25 }).map((parts) => parts.join('')),
        fc.array(fc.nat(), { maxLength: 8 }),
      ),
    );
    fc.assert(
      fc.property(cases, ([values, text, cuts]) => {
        const masks = OutputMasks.of(Object.fromEntries(values.map((v, i) => [`S${i}`, v])))!;
        const at = [0, ...cuts.map((c) => c % (text.length + 1)).sort((a, b) => a - b), text.length];
        const stored = at.slice(1).map((end, seq) => {
          const data = masks.chunk('stdout', seq, text.slice(at[seq], end));
          masks.settled('stdout', seq, true);
          return data;
        });
        stored.push(...masks.end().map((t) => t.data));
        const all = stored.join('');
        for (const v of values) expect(all.includes(v), `${v} in ${all}`).toBe(false);
        expect(all).toBe(masks.text(text));
      }),
      { numRuns: 500 },
    );
  });
});
