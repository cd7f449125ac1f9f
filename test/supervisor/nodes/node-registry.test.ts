// The registry's memory of dead nodes: listed as `dead` for `deadNodeRetentionMs`, then forgotten
// (on every read, so a quiet plane does not keep them forever); a node that dies again is kept
// from its latest death, and the sweep costs no scan of the nodes still kept.
import { describe, expect, it } from 'vitest';
import { NodeRegistry } from '../../../supervisor/nodes/node-registry.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

function view(nodeId: string): NodeView {
  return {
    node_id: nodeId,
    hostname: 'runner-1',
    state: 'busy',
    connected: true,
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

  it('keeps a node that died again from its latest death', () => {
    const MINUTE = 60_000;
    let now = 0;
    const registry = new NodeRegistry('cp-1', 5 * MINUTE, () => now);
    const deadIds = (): string[] => registry.views(() => []).map((v) => v.node_id);
    registry.buryNode(view('a'));
    now += MINUTE;
    registry.buryNode(view('b'));
    registry.buryNode(view('c'));
    now += 3 * MINUTE;
    registry.buryNode(view('b')); // b died again
    now += MINUTE + 1;
    registry.buryNode(view('d'));
    expect(deadIds()).toEqual(['c', 'b', 'd']); // a expired
    now += MINUTE;
    registry.buryNode(view('e'));
    expect(deadIds()).toEqual(['b', 'd', 'e']); // c expired; b's later death keeps it
  });

  it('with a retention of 0 keeps no dead node at all', () => {
    const registry = new NodeRegistry('cp-1', 0, () => 5);
    registry.buryNode(view('a'));
    expect(registry.views(() => [])).toEqual([]);
  });
});
