// The registry's memory of dead nodes: listed as `dead` for `deadNodeRetentionMs`, then forgotten
// (on every read, so a quiet plane does not keep them forever).
import { describe, expect, it } from 'vitest';
import { NodeRegistry } from '../../../supervisor/nodes/node-registry.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

function view(nodeId: string): NodeView {
  return {
    node_id: nodeId,
    hostname: 'runner-1',
    state: 'busy',
    owner: 'cp-1',
    running_jobs: ['job-1'],
    last_heartbeat: new Date(0).toISOString(),
    tags: { os: 'linux' },
    transport: 'tcp',
    protocol_version: 1,
  };
}

describe('NodeRegistry dead nodes', () => {
  it('lists a dead node for the retention setting, then forgets it', () => {
    let now = 1_000;
    const registry = new NodeRegistry('cp-1', 60_000, () => now);
    registry.buryNode(view('a'));
    now += 30_000;
    registry.buryNode(view('b'));
    expect(registry.views(() => []).map((v) => [v.node_id, v.state, v.running_jobs])).toEqual([
      ['a', 'dead', []],
      ['b', 'dead', []],
    ]);
    expect(registry.view('a', () => [])?.tags).toEqual({ os: 'linux' });
    now += 30_000;
    expect(registry.views(() => []).map((v) => v.node_id)).toEqual(['b']);
    expect(registry.view('a', () => [])).toBeUndefined();
    now += 30_000;
    expect(registry.views(() => [])).toEqual([]);
  });

  it('with a retention of 0 keeps no dead node at all', () => {
    const registry = new NodeRegistry('cp-1', 0, () => 5);
    registry.buryNode(view('a'));
    expect(registry.views(() => [])).toEqual([]);
  });
});
