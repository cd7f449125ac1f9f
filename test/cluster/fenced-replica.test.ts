// A replica cut off from NATS while its node stays connected to it, alone (the failure
// scenario's third fault, without jobs or other faults): it fences itself and lets the node go to
// the replica that still reaches NATS, and must not declare it dead afterwards (PROTOCOL.md
// section 4 rule 8; issue 10: a replica that lost NATS judges no node until it has been connected
// for a full TTL). Real processes, real nats-server, a TCP proxy between the replica and NATS.
import { afterAll, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../e2e/harness.js';
import { TcpProxy } from '../supervisor/cluster/tcp-proxy.js';
import { NatsServer } from './nats-server.js';
import { ReplicaCluster } from './replica-process.js';

const h = new Harness();
let nats: NatsServer | undefined;
let proxy: TcpProxy | undefined;

afterAll(async () => {
  proxy?.heal();
  await h.close();
  await proxy?.close();
  await nats?.stop();
}, 60_000);

describe('a replica cut off from NATS', () => {
  it('lets its node go to the other replica and never declares it dead', async () => {
    nats = await NatsServer.start();
    const cluster = new ReplicaCluster(h, { natsUrl: nats.url });
    proxy = await TcpProxy.start(nats.port);
    const [b, c] = await Promise.all([cluster.start('replica-b'), cluster.start('replica-c', { natsUrl: proxy.url })]);
    const agent = await cluster.startAgent(c);
    await waitFor(async () => (await b.api.nodes()).some((n) => n.node_id === agent.nodeId && n.owner === c.id), 15_000, `the node served by ${c.id}`);

    proxy.cut();
    await agent.proc.waitForLog((l) => l.msg === 'registered' && l.control_plane_id === b.id, 20_000, `registered on ${b.id}`);
    await cluster.settled(20_000);

    expect(cluster.deaths()).toEqual([]);
    expect((await b.api.nodes()).filter((n) => n.node_id === agent.nodeId).map((n) => [n.owner, n.state, n.connected])).toEqual([[b.id, 'ready', true]]);
  }, 60_000);
});
