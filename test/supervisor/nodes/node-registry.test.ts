// The registry's memory of dead nodes: each is shown as dead for five minutes after it died,
// then forgotten; a node that dies again is kept five minutes from its latest death.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import { NodeRegistry } from '../../../supervisor/nodes/node-registry.js';

const MINUTE = 60_000;

function view(nodeId: string): NodeView {
  return { node_id: nodeId, hostname: nodeId, state: 'ready', connected: true, owner: 'plane', running_jobs: ['j'], last_heartbeat: new Date().toISOString() };
}

function deadIds(registry: NodeRegistry): string[] {
  return registry.views(() => []).map((v) => v.node_id);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('NodeRegistry dead nodes', () => {
  it('shows a dead node for five minutes, then forgets it; dying again keeps it from then', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const registry = new NodeRegistry('plane');
    registry.buryNode(view('a'));
    vi.advanceTimersByTime(MINUTE);
    registry.buryNode(view('b'));
    registry.buryNode(view('c'));
    vi.advanceTimersByTime(3 * MINUTE);
    registry.buryNode(view('b')); // b died again
    expect(registry.views(() => []).find((v) => v.node_id === 'a')).toMatchObject({ state: 'dead', running_jobs: [] });
    vi.advanceTimersByTime(MINUTE + 1);
    registry.buryNode(view('d'));
    expect(deadIds(registry)).toEqual(['c', 'b', 'd']); // a expired
    vi.advanceTimersByTime(MINUTE);
    registry.buryNode(view('e'));
    expect(deadIds(registry)).toEqual(['b', 'd', 'e']); // c expired; b's later death keeps it
  });
});
