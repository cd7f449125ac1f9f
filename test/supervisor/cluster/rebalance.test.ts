// Balance (issue 10 item 6): a third replica joins two that serve 300 nodes; the two shed idle
// nodes a few at a time (`Shutdown{reason: "rebalance"}`) until each replica serves 90 to 110,
// and no running job is interrupted. Each node is a raw protocol client that, told to shut down,
// resumes on the next replica in the list, as the agent does with several `--url`s.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../../supervisor/control-plane.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { NodeClient } from '../node-client.js';
import { HEARTBEAT_MS, laneJob, Replicas } from './replica-fixture.js';

const NODES = 300;
const BUSY = 10;
let nats: NatsServer;
const replicas = new Replicas(() => nats.url);
const nodes: RoamingNode[] = [];

/** A node that moves to the next replica's URL whenever it is told to shut down, resuming its session. */
class RoamingNode {
  client: NodeClient | undefined;
  nodeId: string | undefined;
  private sessionToken: string | undefined;
  private stopped = false;
  moves = 0;
  readonly running = new Set<string>();

  constructor(private readonly urls: () => string[]) {}

  async start(index: number, registrationToken: string): Promise<void> {
    await this.connect(index, registrationToken);
  }

  stop(): void {
    this.stopped = true;
    this.client?.destroy();
  }

  private async connect(index: number, token: string): Promise<void> {
    const urls = this.urls();
    const client = await NodeClient.connect(urls[index % urls.length]!);
    this.client = client;
    const resume = this.nodeId === undefined ? undefined : { node_id: this.nodeId, running_jobs: [...this.running], unacked_results: [] };
    const ack = await client.register({ token, tags: { lane: 'balance' }, ...(resume === undefined ? {} : { resume }) });
    this.nodeId = ack.data.node_id;
    this.sessionToken = ack.data.session_token;
    client.startHeartbeats(HEARTBEAT_MS / 2);
    void this.listen(client, index);
  }

  /** As the agent does: the next URL, and the one after if that one refuses (a replica still claiming it elsewhere). */
  private async reconnect(index: number): Promise<void> {
    for (let tries = 0; !this.stopped; tries++) {
      try {
        await this.connect(index + tries, this.sessionToken!);
        return;
      } catch (err) {
        if (tries >= 10) throw err;
      }
    }
  }

  private async listen(client: NodeClient, index: number): Promise<void> {
    for (;;) {
      let received;
      try {
        received = await client.next(undefined, 120_000);
      } catch {
        return; // closed
      }
      const { message } = received;
      if (message.type === 'JobAssignment') {
        this.running.add(message.data.job_id);
        client.send({ type: 'JobAccepted', data: { job_id: message.data.job_id, attempt: message.data.attempt } });
      } else if (message.type === 'Shutdown' && !this.stopped) {
        client.destroy();
        this.moves += 1;
        await this.reconnect(index + 1);
        return;
      }
    }
  }
}

const serving = (plane: ControlPlane): number => plane.api.listNodes().filter((n) => n.connected && n.state !== 'dead').length;

beforeAll(async () => {
  nats = await NatsServer.start();
});

afterAll(async () => {
  for (const node of nodes) node.stop();
  await replicas.stopAll();
  await nats?.stop();
});

describe('a replica that joins', () => {
  it('gets an even share of the nodes within a minute, a few at a time, and no running job is interrupted', async () => {
    // Rounds every 300 ms; a lease of 8 s (renewed each second) rather than the fixture's 3 s or
    // the default 5 s: three replicas and 300 nodes share this one process, and on a loaded machine a stall of
    // a couple of seconds would fence a replica, whose nodes would then all move at once.
    const fast = { rebalanceIntervalMs: 300, leaseTtlMs: 8_000, leaseRenewMs: 1_000 };
    const a = await replicas.start('balance-a', fast);
    const b = await replicas.start('balance-b', fast);
    const urls = (): string[] => replicas.planes.map((p) => p.nodeUrls[0]!);
    const token = await a.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    for (let i = 0; i < NODES; i++) {
      const node = new RoamingNode(urls);
      nodes.push(node);
      await node.start(i % 2, token);
    }
    // Deadlines, not claims: 300 nodes register in this one process (alone the whole test takes about 5 s).
    await expect.poll(() => serving(a) + serving(b), { timeout: 60_000 }).toBe(NODES);
    const jobs = await a.api.submitJobs(Array.from({ length: BUSY }, () => laneJob('balance', ['sleep', '600'])));
    await expect.poll(async () => (await a.api.listJobs({ state: 'Running' }, 100)).length, { timeout: 60_000 }).toBe(BUSY);

    const c = await replicas.start('balance-c', fast);
    await expect
      .poll(() => [a, b, c].map(serving).every((n) => n >= 90 && n <= 110) && [a, b, c].map(serving).reduce((x, y) => x + y, 0) === NODES, {
        // A deadline, not the claim: alone the share is even within about 5 s; beside the rest of
        // the suite on 2 cores this process gets a fraction of a core.
        timeout: 120_000,
        interval: 200,
      })
      .toBe(true);
    // Only idle nodes moved: every job is still on its first attempt, running on the node that took it.
    for (const job of jobs) {
      const record = await c.api.getJob(job.job_id);
      expect(record).toMatchObject({ state: 'Running', attempt: 1 });
    }
    const moved = nodes.reduce((sum, n) => sum + n.moves, 0);
    // A few at a time, no stampede: a node told to move goes to the next URL of its list, which
    // may be the other replica over its share, so some move twice (and, on a loaded machine where
    // the counts lag the moves, a few more), but far from every node moving again and again.
    expect(moved).toBeGreaterThanOrEqual(90);
    expect(moved, `${moved} moves`).toBeLessThan(2 * NODES);
  }, 240_000);
});
