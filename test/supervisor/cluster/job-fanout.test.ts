// What a job costs the replicas that do not run it, counted (not timed): replica A runs jobs on
// its own node while replica B, with no node, only follows. nats-server's /connz counts every
// message it sends each replica's connection (named after the replica); per job B must receive
// only its watch's entries, one per write of the job (they keep its index and, through
// replica-bus.ts, its bus), and the replica that runs the job sends only its writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../../../supervisor/control-plane.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { jobResultMessage, NodeClient } from '../node-client.js';
import { nextEvent } from './await-event.js';
import { laneJob, Replicas } from './replica-fixture.js';

const JOBS = 40;

let nats: NatsServer;
const replicas = new Replicas(() => nats.url);
const clients: NodeClient[] = [];
let a: ControlPlane;
let b: ControlPlane;

// Long leases and heartbeats: the count is the jobs', not the lease renewals' or the heartbeats'.
const QUIET = { leaseTtlMs: 60_000, leaseRenewMs: 20_000, heartbeatIntervalMs: 60_000, revocationPollMs: 0 };

beforeAll(async () => {
  nats = await NatsServer.start({ monitor: true });
  a = await replicas.start('fan-a', QUIET);
  b = await replicas.start('fan-b', QUIET);
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await replicas.stopAll();
  await nats?.stop();
});

interface ConnCounts {
  /** Messages the server received from the replica. */
  in: number;
  /** Messages the server sent the replica. */
  out: number;
}

async function connCounts(): Promise<Map<string, ConnCounts>> {
  const response = await fetch(`${nats.monitorUrl}/connz?limit=1024`);
  const body = (await response.json()) as { connections: { name?: string; in_msgs: number; out_msgs: number }[] };
  const out = new Map<string, ConnCounts>();
  for (const c of body.connections) {
    const sum = out.get(c.name ?? '') ?? { in: 0, out: 0 };
    out.set(c.name ?? '', { in: sum.in + c.in_msgs, out: sum.out + c.out_msgs });
  }
  return out;
}

/**
 * Runs `count` jobs one after the other on `node` (assignment, acceptance, result,
 * acknowledgement) and resolves once `follower` heard the last one end: what it was sent for
 * them has arrived.
 */
async function runJobs(plane: ControlPlane, node: NodeClient, lane: string, count: number, follower: ControlPlane): Promise<void> {
  for (let i = 0; i < count; i++) {
    const [record] = await plane.api.submitJobs([laneJob(lane, ['true'])]);
    const heard = nextEvent(follower.bus, (e) => e.kind === 'job' && e.job_id === record!.job_id && e.state === 'Completed', 10_000, 'the follower hearing the job end');
    const { message } = await node.next('JobAssignment', 10_000);
    expect(message.data).toMatchObject({ job_id: record!.job_id });
    node.send({ type: 'JobAccepted', data: { job_id: record!.job_id, attempt: 1 } });
    node.send(jobResultMessage(node.nodeId, record!.job_id, 1));
    await node.next('JobResultAck', 10_000);
    await heard;
  }
}

describe('what a job costs the replicas', () => {
  it('sends a replica that does not run a job only a few messages for it', async () => {
    const node = await NodeClient.connect(a.nodeUrls[0]!);
    clients.push(node);
    await node.register({ token: await a.tokens.mintRegistrationToken({ ttlSeconds: 600 }), tags: { lane: 'fan' } });
    await runJobs(a, node, 'fan', 5, b); // warm-up: first uses, the scheduler's and the index's state
    const before = await connCounts();
    await runJobs(a, node, 'fan', JOBS, b);
    const after = await connCounts();
    const per = (name: string, k: keyof ConnCounts): number => (after.get(name)![k] - before.get(name)![k]) / JOBS;
    const figures = { aIn: per('fan-a', 'in'), aOut: per('fan-a', 'out'), bIn: per('fan-b', 'in'), bOut: per('fan-b', 'out') };
    console.log(`messages per job: runner A ${figures.aIn.toFixed(1)} in / ${figures.aOut.toFixed(1)} out, follower B ${figures.bIn.toFixed(1)} in / ${figures.bOut.toFixed(1)} out`);
    // The follower is sent one watch entry per write of the job (create, assign, accept, result)
    // and asks for nothing (no read of a job it heard of); no bus event is sent for a job change.
    expect(figures.bOut).toBeLessThanOrEqual(4.5);
    expect(figures.bIn).toBeLessThanOrEqual(0.5);
    // The runner sends its writes (a batch of one: commit, create, discard; assign, accept, result)
    // and no bus event nor read, and is sent their acknowledgements and its watch's four entries.
    expect(figures.aIn).toBeLessThanOrEqual(7);
    expect(figures.aOut).toBeLessThanOrEqual(11);
  });
});
