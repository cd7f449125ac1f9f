// The balance rule on its own: a replica sheds only when over 10% above an even share (or above
// it while another is 10% under) and some replica holds at least two fewer, a quarter of its excess a round at most; and the cluster's
// node list shows each node once, its live entry over a replica's memory of it dead.
import { describe, expect, it } from 'vitest';
import { onePerNode } from '../../../supervisor/cluster/cluster-peers.js';
import { shedCount } from '../../../supervisor/cluster/rebalancer.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

describe('shedCount', () => {
  it.each([
    [150, [150, 0], 13], // a replica joins two that hold 150 each: a quarter of the 50 over
    [105, [100, 95], 0], // all within 10% of 100
    [110, [110, 80], 3], // within 10% itself, but one replica is 20% under
    [111, [100, 89], 3],
    [1, [0, 0], 0], // one node, three replicas: moving it would only move the imbalance
    [2, [1, 0], 1],
    [1, [1, 1], 0],
    [5, [], 0], // alone
    [10_000, [0], 50], // never a stampede
  ])('%i against %j sheds %i', (own, others, expected) => {
    expect(shedCount(own, others)).toBe(expected);
  });
});

describe('onePerNode', () => {
  const view = (owner: string, state: NodeView['state'], at: string): NodeView => ({
    node_id: 'n1', hostname: 'h', state, connected: state !== 'dead', owner, running_jobs: [], last_heartbeat: at, tags: {}, transport: 'tcp', protocol_version: 2,
  });

  it('keeps the live entry of a node over the dead ones other replicas remember', () => {
    const live = view('c', 'ready', '2026-01-01T00:00:00.000Z');
    expect(onePerNode([view('a', 'dead', '2026-01-01T00:00:05.000Z'), live, view('b', 'dead', '2026-01-01T00:00:09.000Z')])).toEqual([live]);
  });

  it('keeps the last heard of two dead entries', () => {
    const later = view('b', 'dead', '2026-01-01T00:00:09.000Z');
    expect(onePerNode([view('a', 'dead', '2026-01-01T00:00:05.000Z'), later])).toEqual([later]);
  });
});
