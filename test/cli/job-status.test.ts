// The one-line status of `job submit --wait` and `job get`, from the job answer, for every shape
// of `waiting_for` the plane may send (a reason name, or an object with details).
import { describe, expect, it } from 'vitest';
import { describeJob, describeSelector, describeWaitingFor, type NodeNames } from '../../cli/job-status.js';
import type { JobAnswer } from '../../supervisor/admin/wire-types.js';

const names = { hostname: async (id: string) => (id === 'n-1' ? 'runner-7' : undefined) } as unknown as NodeNames;

function job(fields: Partial<JobAnswer>): JobAnswer {
  return {
    job_id: 'j-1',
    state: 'Queued',
    attempt: 1,
    priority: 'Normal',
    job: { name: 'x', image: '', command: ['true'], environment: {}, timeout: { secs: 1, nanos: 0 }, resource_requirements: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 } },
    execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
    selector: { runner_type: 'macos' },
    ...fields,
  };
}

describe('job status lines', () => {
  it('says why a queued job waits', async () => {
    expect(await describeJob(job({ waiting_for: 'no_matching_node' }), names)).toBe('queued: no ready node matches runner_type=macos');
    expect(await describeJob(job({ waiting_for: 'matching_nodes_full' }), names)).toBe('queued: every node matching runner_type=macos is full');
    expect(describeWaitingFor(job({ attempt: 2, waiting_for: 'retry_backoff' }))).toBe('waiting to retry (attempt 2)');
    expect(await describeJob(job({}), names)).toBe('queued: waiting for a ready node matching runner_type=macos');
    expect(await describeJob(job({ selector: {} }), names)).toBe('queued: waiting for a ready node');
  });

  it('names the node a job runs on, with its hostname when the plane knows it', async () => {
    expect(await describeJob(job({ state: 'Running', node_id: 'n-1' }), names)).toBe('running on node n-1 (runner-7)');
    expect(await describeJob(job({ state: 'Assigned', node_id: 'n-2' }), names)).toBe('assigned to node n-2');
  });

  it('writes a selector as it was typed', () => {
    expect(describeSelector({ runner_type: 'shell', job_type: 'command', tags: { os: 'linux', gpu: 'a100' } })).toBe(
      'runner_type=shell, job_type=command, os=linux, gpu=a100',
    );
  });
});
