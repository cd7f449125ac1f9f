// The other replicas' nodes as this replica's live feed shows them: each view follows the last
// node event heard (state, owner), however many came between two reads, and a node that moved
// to this replica leaves the map.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { LocalBus } from '../../../supervisor/bus/local-bus.js';
import { RemoteNodeViews } from '../../../supervisor/cluster/remote-node-views.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';

const NODE = '11111111-1111-4111-8111-111111111111';
const listed: NodeView = {
  node_id: NODE,
  hostname: 'runner-1',
  state: 'ready',
  connected: true,
  owner: 'replica-b',
  running_jobs: [],
  last_heartbeat: '2026-01-01T00:00:00.000Z',
  tags: { pool: 'a' },
  transport: 'tcp',
  protocol_version: 1,
};

describe('RemoteNodeViews', () => {
  it("shows each peer's node as its last event left it, and drops a node that came to this replica", async () => {
    const bus = new LocalBus();
    const views = new RemoteNodeViews(bus, 'replica-a', async () => [listed], pino({ level: 'silent' }));
    await views.refresh();
    expect(views.get(NODE)).toEqual(listed);
    const before = Date.now();
    bus.publish({ kind: 'node', node_id: NODE, state: 'busy', owner: 'replica-b' });
    bus.publish({ kind: 'node', node_id: NODE, state: 'ready', owner: 'replica-b' });
    bus.publish({ kind: 'node', node_id: NODE, state: 'dead', owner: 'replica-c' });
    const view = views.get(NODE)!;
    expect(view).toMatchObject({ hostname: 'runner-1', tags: { pool: 'a' }, state: 'dead', owner: 'replica-c', connected: false });
    expect(Date.parse(view.last_heartbeat)).toBeGreaterThanOrEqual(before - 1);
    expect(views.list()).toEqual([view]);
    // A node first heard of by an event is listed from it alone.
    const other = '22222222-2222-4222-8222-222222222222';
    bus.publish({ kind: 'node', node_id: other, state: 'ready', owner: 'replica-c' });
    expect(views.list().map((v) => [v.node_id, v.state, v.owner])).toEqual([
      [NODE, 'dead', 'replica-c'],
      [other, 'ready', 'replica-c'],
    ]);
    bus.publish({ kind: 'node', node_id: other, state: 'ready', owner: 'replica-a' });
    expect(views.get(other)).toBeUndefined();
    views.close();
  });
});
