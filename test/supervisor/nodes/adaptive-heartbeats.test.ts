// Adaptive heartbeats (issue 9 item 3) through a real plane over TCP, with raw protocol nodes:
// with a low `maxHeartbeatsPerSecond`, nodes get `Configure` with a longer interval as more
// register, a new node's RegisterAck gives the current fleet interval, the interval comes back
// down as nodes leave, and no node is declared dead across the changes. (That a node heartbeating
// across a change is never expired, whatever its timing, is the node machine's test.)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import { NodeClient } from '../node-client.js';

const BASE_MS = 1_000;
const logger = createLogger({ level: 'silent' });
let dataDir: string;
let plane: ControlPlane;
const clients: NodeClient[] = [];

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-adaptive-hb-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      tcp: '127.0.0.1:0',
      unix: 'off',
      http: 'off',
      ws: 'off',
      grpc: 'off',
      heartbeatIntervalMs: BASE_MS,
      // Two nodes fit the base interval; a third is over it.
      maxHeartbeatsPerSecond: 2,
      maxHeartbeatIntervalMs: 60_000,
    },
  });
  plane = await startControlPlane(config, logger);
});

afterAll(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await plane?.shutdown();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function join(): Promise<{ node: NodeClient; ackMs: number }> {
  const node = await NodeClient.connect(plane.nodeUrls[0]!);
  clients.push(node);
  const token = await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
  const ack = await node.register({ token });
  return { node, ackMs: ack.data.heartbeat_interval_ms };
}

async function configured(node: NodeClient): Promise<number> {
  return (await node.next('Configure')).message.data.heartbeat_interval_ms;
}

function leave(node: NodeClient): void {
  node.send({ type: 'Deregister', data: { node_id: node.nodeId, reason: 'scaled in' } });
}

describe('adaptive heartbeats', () => {
  it('lengthens every node\'s interval with Configure as the fleet grows, shortens it as it shrinks, and keeps every node alive', async () => {
    const a = await join();
    const b = await join();
    expect([a.ackMs, b.ackMs]).toEqual([BASE_MS, BASE_MS]);

    // A third node is over 2 heartbeats a second at 1 s: the interval goes up with 25% headroom.
    const c = await join();
    expect(c.ackMs).toBe(1_875);
    expect([await configured(a.node), await configured(b.node)]).toEqual([1_875, 1_875]);
    // Each node heartbeats at what it was told; the plane answers nothing to it.
    for (const n of [a, b, c]) n.node.heartbeat();

    const d = await join();
    expect(d.ackMs).toBe(2_500);
    expect([await configured(a.node), await configured(b.node), await configured(c.node)]).toEqual([2_500, 2_500, 2_500]);

    // Nodes leave: a step down at each 25% of the fleet gone, down to the base interval.
    leave(d.node);
    expect([await configured(a.node), await configured(b.node), await configured(c.node)]).toEqual([1_875, 1_875, 1_875]);
    leave(c.node);
    expect([await configured(a.node), await configured(b.node)]).toEqual([1_250, 1_250]);
    leave(b.node);
    expect(await configured(a.node)).toBe(BASE_MS);
    a.node.heartbeat();

    // No Configure beyond the changes, no error; the one node left was never dead.
    await Promise.all([b.node, c.node, d.node].map((n) => n.closedWithin()));
    expect(a.node.unread()).toEqual([]);
    expect(plane.api.getNode(a.node.nodeId!)).toMatchObject({ state: 'ready', connected: true });
    expect(plane.api.getNode(a.node.nodeId!)?.transitions?.map((t) => t.to)).not.toContain('dead');
  });
});
