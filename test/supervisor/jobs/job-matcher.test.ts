// The scheduler's matching rules, by table: what a job's selector and resources demand of a node,
// and which of several matching nodes gets the job.
import { describe, expect, it } from 'vitest';
import type { ResourceRequirements } from '../../../protocol/messages.js';
import { nodeMatches, pickNode, type NodeCapacity } from '../../../supervisor/jobs/job-matcher.js';
import type { JobRecord, JobSelector } from '../../../supervisor/store/job-store.js';

function job(selector: JobSelector = {}, need: ResourceRequirements = { cpu_cores: 1, memory_mb: 512, disk_gb: 1 }): JobRecord {
  return {
    job_id: '33333333-3333-4333-8333-333333333333',
    state: 'Queued',
    attempt: 1,
    cancel_requested: false,
    created_at: '2025-01-01T00:00:00.000Z',
    seq: 1,
    priority: 'Normal',
    max_attempts: 3,
    selector,
    job: {
      name: 'build',
      image: 'debian:12',
      command: ['true'],
      environment: {},
      timeout: { secs: 60, nanos: 0 },
      resource_requirements: need,
    },
    execution_context: {
      workspace_id: 'ws',
      pipeline_id: 'pl',
      build_number: 1,
      git_ref: 'main',
      variables: {},
      secrets: {},
    },
  };
}

function node(overrides: Partial<NodeCapacity> = {}): NodeCapacity {
  return {
    nodeId: 'n',
    runnerTypes: ['docker', 'shell'],
    supportedJobTypes: ['build', 'test'],
    tags: { os: 'linux', arch: 'x86_64' },
    maxResources: { cpu_cores: 4, memory_mb: 8192, disk_gb: 100 },
    used: { cpu_cores: 0, memory_mb: 0, disk_gb: 0 },
    runningJobs: 0,
    accepting: true,
    ...overrides,
  };
}

const ZERO = { cpu_cores: 0, memory_mb: 0, disk_gb: 0 };

describe('nodeMatches', () => {
  const cases: Array<[string, JobRecord, NodeCapacity, boolean]> = [
    ['an empty selector on an idle node', job(), node(), true],
    ['a node that is not accepting', job(), node({ accepting: false }), false],
    ['a runner_type the node has', job({ runner_type: 'shell' }), node(), true],
    ['a runner_type the node lacks', job({ runner_type: 'vm' }), node(), false],
    ['a job_type the node supports', job({ job_type: 'test' }), node(), true],
    ['a job_type the node does not support', job({ job_type: 'deploy' }), node(), false],
    ['every selector tag equal', job({ tags: { os: 'linux', arch: 'x86_64' } }), node(), true],
    ['a selector tag with another value', job({ tags: { os: 'windows' } }), node(), false],
    ['a selector tag the node lacks', job({ tags: { gpu: 'yes' } }), node(), false],
    ['a tag named like an Object member', job({ tags: { toString: 'x' } }), node(), false],
    ['an empty tags map', job({ tags: {} }), node({ tags: {} }), true],
    ['all criteria at once', job({ runner_type: 'docker', job_type: 'build', tags: { os: 'linux' } }), node(), true],
    [
      'one criterion failing among several',
      job({ runner_type: 'docker', job_type: 'build', tags: { os: 'mac' } }),
      node(),
      false,
    ],
    ['resources that fit exactly', job({}, { cpu_cores: 4, memory_mb: 8192, disk_gb: 100 }), node(), true],
    ['too much cpu', job({}, { cpu_cores: 5, memory_mb: 1, disk_gb: 1 }), node(), false],
    ['too much memory', job({}, { cpu_cores: 1, memory_mb: 9000, disk_gb: 1 }), node(), false],
    ['too much disk', job({}, { cpu_cores: 1, memory_mb: 1, disk_gb: 101 }), node(), false],
    [
      'room left beside running jobs',
      job({}, { cpu_cores: 2, memory_mb: 4096, disk_gb: 50 }),
      node({ used: { cpu_cores: 2, memory_mb: 4096, disk_gb: 50 }, runningJobs: 2 }),
      true,
    ],
    [
      'no cpu left beside running jobs',
      job({}, { cpu_cores: 2, memory_mb: 1, disk_gb: 1 }),
      node({ used: { cpu_cores: 3, memory_mb: 0, disk_gb: 0 }, runningJobs: 1 }),
      false,
    ],
    [
      'fractional cores that add up exactly',
      // 0.3 - 0.1 is 0.19999999999999998 in floating point.
      job({}, { cpu_cores: 0.2, memory_mb: 0, disk_gb: 0 }),
      node({ maxResources: { cpu_cores: 0.3, memory_mb: 1, disk_gb: 1 }, used: { cpu_cores: 0.1, memory_mb: 0, disk_gb: 0 } }),
      true,
    ],
    // A job that declares nothing still takes one core's slot, so a full node runs no more of them.
    ['a zero-resource job on a full node', job({}, ZERO), node({ used: { cpu_cores: 4, memory_mb: 8192, disk_gb: 100 } }), false],
    ['a zero-resource job beside three one-core jobs', job({}, ZERO), node({ used: { cpu_cores: 3, memory_mb: 0, disk_gb: 0 } }), true],
    ['a zero-resource job on a node that is not accepting', job({}, ZERO), node({ accepting: false }), false],
  ];

  it.each(cases)('%s', (_label, j, n, expected) => {
    expect(nodeMatches(j, n)).toBe(expected);
  });
});

describe('pickNode', () => {
  const cases: Array<[string, JobRecord, NodeCapacity[], string | undefined]> = [
    ['no nodes', job(), [], undefined],
    ['no matching node', job({ runner_type: 'vm' }), [node({ nodeId: 'a' }), node({ nodeId: 'b' })], undefined],
    [
      'the only matching node, even if busier',
      job({ tags: { gpu: 'yes' } }),
      [node({ nodeId: 'a' }), node({ nodeId: 'b', tags: { gpu: 'yes' }, runningJobs: 3 })],
      'b',
    ],
    [
      'the node with the fewest running jobs',
      job(),
      [node({ nodeId: 'a', runningJobs: 2 }), node({ nodeId: 'b', runningJobs: 0 }), node({ nodeId: 'c', runningJobs: 1 })],
      'b',
    ],
    [
      'fewest jobs beats more free cpu',
      job(),
      [
        node({ nodeId: 'a', runningJobs: 1, maxResources: { cpu_cores: 64, memory_mb: 8192, disk_gb: 100 } }),
        node({ nodeId: 'b', runningJobs: 0, maxResources: { cpu_cores: 2, memory_mb: 8192, disk_gb: 100 } }),
      ],
      'b',
    ],
    [
      'on equal jobs, the most free cpu',
      job(),
      [
        node({ nodeId: 'a', runningJobs: 1, used: { cpu_cores: 3, memory_mb: 0, disk_gb: 0 } }),
        node({ nodeId: 'b', runningJobs: 1, used: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } }),
        node({ nodeId: 'c', runningJobs: 1, used: { cpu_cores: 2, memory_mb: 0, disk_gb: 0 } }),
      ],
      'b',
    ],
    ['on a full tie, the first given', job(), [node({ nodeId: 'a' }), node({ nodeId: 'b' })], 'a'],
    [
      'skips a less loaded node that is not accepting',
      job(),
      [node({ nodeId: 'a', accepting: false }), node({ nodeId: 'b', runningJobs: 4 })],
      'b',
    ],
    [
      'skips a less loaded node without room',
      job({}, { cpu_cores: 2, memory_mb: 0, disk_gb: 0 }),
      [node({ nodeId: 'a', runningJobs: 1, used: { cpu_cores: 3, memory_mb: 0, disk_gb: 0 } }), node({ nodeId: 'b', runningJobs: 2 })],
      'b',
    ],
  ];

  it.each(cases)('%s', (_label, j, nodes, expected) => {
    expect(pickNode(j, nodes)?.nodeId).toBe(expected);
  });

  it('takes any iterable, such as a Map of live nodes', () => {
    const live = new Map([
      ['a', node({ nodeId: 'a', runningJobs: 1 })],
      ['b', node({ nodeId: 'b' })],
    ]);
    expect(pickNode(job(), live.values())?.nodeId).toBe('b');
  });
});
