// The body of `POST /v1/jobs` made a NewJob (supervisor/admin/job-request.ts): defaults filled,
// and what the plane will send in a JobAssignment valid for the node that gets it.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody, type Codec } from '../../../protocol/codec.js';
import type { MusterError } from '../../../protocol/errors.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { ENCRYPTION_OVERHEAD_BYTES } from '../../../transports/payload-cipher.js';

const DEFAULTS = { maxAttempts: 3, jobTimeoutMs: 3_600_000, maxFrameBytes: 1_048_576 };

describe('toNewJob', () => {
  it('names a job without a name after its command, with no control character (a script has newlines)', () => {
    const job = toNewJob({ job: { command: ['sh', '-c', 'echo a\n\techo b'] } }, DEFAULTS);
    expect(job.job.name).toBe('sh -c echo a  echo b');
    expect(job.job.command).toEqual(['sh', '-c', 'echo a\n\techo b']);
  });
});

describe('a job too big to send', () => {
  it('is refused at submit, naming max_frame_bytes, when its JobAssignment could not be sent (the trial’s 600 KB command at a 512 KiB limit)', () => {
    const command = ['sh', '-c', 'x'.repeat(100_000), ...Array.from({ length: 5 }, () => 'y'.repeat(100_000))];
    const limits = { ...DEFAULTS, maxFrameBytes: 512 * 1024 };
    let refused: MusterError | undefined;
    try {
      toNewJob({ job: { command } }, limits);
    } catch (err) {
      refused = err as MusterError;
    }
    expect(refused).toMatchObject({ code: 'invalid_message', field: 'job' });
    expect(refused?.message).toContain(`max_frame_bytes (${512 * 1024})`);
    expect(() => toNewJob({ job: { command } }, DEFAULTS)).not.toThrow();
  });

  it('takes a job whose largest JobAssignment (either codec, any attempt, encrypted) fits exactly, and refuses it one byte below', () => {
    const bodies = [
      { job: { command: ['echo', '"\\'.repeat(30_000)] } }, // escapes: larger in JSON
      { job: { command: ['true'], environment: { A: 'b'.repeat(100_000) } }, execution_context: { secrets: { S: 's' } } },
    ];
    for (const body of bodies) {
      const { job, execution_context, priority } = toNewJob(body, DEFAULTS);
      const assignment = { type: 'JobAssignment', data: { job_id: randomUUID(), attempt: Number.MAX_SAFE_INTEGER, job, execution_context, priority } };
      const largest = Math.max(...([CODEC_JSON, CODEC_MSGPACK] as Codec[]).map((codec) => 1 + encodeBody(codec, assignment).length + ENCRYPTION_OVERHEAD_BYTES));
      expect(() => toNewJob(body, { ...DEFAULTS, maxFrameBytes: largest })).not.toThrow();
      expect(() => toNewJob(body, { ...DEFAULTS, maxFrameBytes: largest - 1 })).toThrow(/max_frame_bytes/);
    }
  });
});
