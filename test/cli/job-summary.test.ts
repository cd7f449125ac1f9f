// `muster job get`'s summary of a job that needed several attempts (a dead letter): every
// attempt with its node and how it ended, the node's own words escaped for the terminal.
import { describe, expect, it } from 'vitest';
import { jobSummary } from '../../cli/job-summary.js';
import type { NodeNames } from '../../cli/job-status.js';
import type { AttemptAnswer, JobAnswer } from '../../supervisor/admin/wire-types.js';

const names = { hostname: async (id: string) => (id === 'n1' ? 'build-1' : undefined) } as unknown as NodeNames;

const job = {
  job_id: 'j1',
  state: 'DeadLettered',
  reason: 'max attempts reached',
  attempt: 3,
  max_attempts: 3,
  priority: 'Normal',
  job: { name: 'make', command: ['make'], image: '', environment: {}, timeout: { secs: 60, nanos: 0 }, resource_requirements: { cpu_cores: 1, memory_mb: 1, disk_gb: 0 } },
  created_at: '2026-12-01T10:00:00.000Z',
} as unknown as JobAnswer;

const attempts: AttemptAnswer[] = [
  { attempt: 1, node_id: 'n1', assigned_at: '2026-12-01T10:00:01.000Z', outcome: 'Withdrawn', reason: 'rejected: docker daemon down' },
  { attempt: 2, node_id: 'n2', assigned_at: '2026-12-01T10:00:02.000Z', outcome: 'Withdrawn', reason: 'accept timeout \u001b[2J' },
  { attempt: 3, node_id: 'n1', assigned_at: '2026-12-01T10:00:03.000Z', outcome: 'Withdrawn', reason: 'node dead' },
];

describe('muster job get of a job with several attempts', () => {
  it('lists each attempt, its node and why it ended', async () => {
    const text = await jobSummary(job, [], names, new Date('2026-12-01T10:01:00.000Z'), attempts);
    expect(text).toContain('state      DeadLettered: max attempts reached');
    const listed = text.split('attempts:\n')[1]!.trimEnd().split('\n');
    expect(listed).toEqual([
      '    1  n1 (build-1)  Withdrawn: rejected: docker daemon down',
      '    2  n2  Withdrawn: accept timeout \\u{1b}[2J',
      '    3  n1 (build-1)  Withdrawn: node dead',
    ]);
  });

  it('lists nothing for a job with one attempt', async () => {
    const text = await jobSummary({ ...job, attempt: 1 } as JobAnswer, [], names, new Date(), attempts.slice(0, 1));
    expect(text).not.toContain('attempts:');
  });
});
