// The body of `POST /v1/jobs` made a NewJob (supervisor/admin/job-request.ts): defaults filled,
// and what the plane will send in a JobAssignment valid for the node that gets it.
import { describe, expect, it } from 'vitest';
import { toNewJob } from '../../../supervisor/admin/job-request.js';

const DEFAULTS = { maxAttempts: 3, jobTimeoutMs: 3_600_000 };

describe('toNewJob', () => {
  it('names a job without a name after its command, with no control character (a script has newlines)', () => {
    const job = toNewJob({ job: { command: ['sh', '-c', 'echo a\n\techo b'] } }, DEFAULTS);
    expect(job.job.name).toBe('sh -c echo a  echo b');
    expect(job.job.command).toEqual(['sh', '-c', 'echo a\n\techo b']);
  });
});
