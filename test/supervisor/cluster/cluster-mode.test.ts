// Cluster mode in `startControlPlane`: two replicas on one real nats-server share one fleet.
// Jobs and commands cross replicas (a job submitted to A runs on a node of B, a cancel sent to A
// reaches it), any replica lists every node with its owner, a node that reaches B while A still
// serves it is released by A (`session_replaced`) and resumed on B with its running job, and a
// revocation on A disconnects a node on B, and an artifact upload begun on A and cut off is
// resumed on B and downloaded through A; a replica's duties sweep an upload left in NATS by a
// process that is gone. Nodes are raw protocol clients (test/supervisor/node-client.ts).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import { ConfigError, loadConfig } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import { connect } from '@nats-io/transport-node';
import { ARTIFACTS_BUCKET, ObjectArtifactStore } from '../../../supervisor/cluster/object-artifact-store.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { jobResultMessage, NodeClient } from '../node-client.js';
import { nextEvent } from './await-event.js';
import { HEARTBEAT_MS, laneJob, Replicas } from './replica-fixture.js';

let nats: NatsServer;
const replicas = new Replicas(() => nats.url);
const clients: NodeClient[] = [];
let a: ControlPlane;
let b: ControlPlane;

beforeAll(async () => {
  nats = await NatsServer.start();
  a = await replicas.start('replica-a', { http: '127.0.0.1:0' });
  b = await replicas.start('replica-b', { http: '127.0.0.1:0' });
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await replicas.stopAll();
  await nats?.stop();
});

/** A node registered on `plane` with a registration token minted by `minter` (any replica: they share the secret). */
async function nodeOn(plane: ControlPlane, lane: string, minter: ControlPlane = plane): Promise<NodeClient> {
  const node = await NodeClient.connect(plane.nodeUrls[0]!);
  clients.push(node);
  await node.register({ token: await minter.tokens.mintRegistrationToken({ ttlSeconds: 600 }), tags: { lane } });
  node.startHeartbeats(HEARTBEAT_MS / 2);
  return node;
}

const jobEvent = (jobId: string, state: string) => (e: BusEvent) => e.kind === 'job' && e.job_id === jobId && e.state === state;

describe('cluster mode', () => {
  it('refuses to start without one token secret shared by every replica', async () => {
    const dataDir = replicas.dataDir('nosecret');
    const config = loadConfig({ env: { MUSTER_NATS_URL: nats.url }, overrides: { dataDir, tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: 'off' } });
    const err = await startControlPlane(config, pino({ level: 'silent' })).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems[0]?.setting).toBe('jwtSecret');
  });

  it('runs a job submitted to one replica on a node owned by the other, and each lists the node with its owner', async () => {
    const node = await nodeOn(b, 'cross', a);
    const record = await a.api.submitJob(laneJob('cross', ['true']));
    const completed = nextEvent(a.bus, jobEvent(record.job_id, 'Completed'), 10_000, 'Completed on replica A');
    const { message } = await node.next('JobAssignment', 10_000);
    expect(message.data).toMatchObject({ job_id: record.job_id, attempt: 1 });
    node.send({ type: 'JobAccepted', data: { job_id: record.job_id, attempt: 1 } });
    node.send(jobResultMessage(node.nodeId!, record.job_id, 1));
    await node.next('JobResultAck');
    await completed;
    expect((await a.api.getJob(record.job_id))?.state).toBe('Completed');
    // A learns of B from B's lease, read every renewal interval.
    await expect.poll(async () => (await a.api.clusterNodes!()).find((n) => n.node_id === node.nodeId)?.owner, { timeout: 5_000 }).toBe('replica-b');
    expect((await a.api.findNode!(node.nodeId!))?.owner).toBe('replica-b');
    expect(a.api.cluster!().replicas.map((r) => r.control_plane_id)).toEqual(['replica-a', 'replica-b']);
    expect(a.api.isReady()).toBe(true);
    // The live feed (visualizer) of A shows B's node as B's events tell it, not as gone.
    expect(a.api.nodeView!(node.nodeId!)).toMatchObject({ owner: 'replica-b', state: 'ready' });
    expect(a.api.fleetNodes!().filter((n) => n.node_id === node.nodeId)).toHaveLength(1);
    expect(await a.api.metrics()).toMatch(/^muster_cluster_leases_held 1$/m);
    expect(await a.api.metrics()).toMatch(/^muster_cluster_lease_renewal_seconds_count [1-9]/m);
  });

  it('carries a cancel sent to one replica to the node on the other', async () => {
    const node = await nodeOn(b, 'cancel');
    const { job_id: jobId } = await b.api.submitJob(laneJob('cancel', ['sleep', '600']));
    const { message } = await node.next('JobAssignment', 10_000);
    expect(message.data.job_id).toBe(jobId);
    const running = nextEvent(a.bus, jobEvent(jobId, 'Running'), 10_000, 'Running heard on A');
    node.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: message.data.attempt } });
    await running;
    await a.api.cancelJob(jobId);
    const cancel = await node.next('CancelJob', 10_000);
    expect(cancel.message.data).toMatchObject({ job_id: jobId, attempt: message.data.attempt });
  });

  it('moves a node that reaches B while A serves it: A closes it with session_replaced, B resumes its running job', async () => {
    const first = await nodeOn(a, 'move');
    const record = await a.api.submitJob(laneJob('move', ['sleep', '600']));
    const { message } = await first.next('JobAssignment', 10_000);
    expect(message.data.job_id).toBe(record.job_id);
    const running = nextEvent(b.bus, jobEvent(record.job_id, 'Running'), 10_000, 'Running heard on B');
    first.send({ type: 'JobAccepted', data: { job_id: record.job_id, attempt: 1 } });
    await running;

    const moved = await NodeClient.connect(b.nodeUrls[0]!);
    clients.push(moved);
    const ack = await moved.register({ token: first.sessionToken!, resume: { node_id: first.nodeId!, running_jobs: [record.job_id], unacked_results: [] } });
    expect(ack.data).toMatchObject({ node_id: first.nodeId, resumed: true, control_plane_id: 'replica-b' });
    const replaced = await first.next('Error', 10_000);
    expect(replaced.message.data.code).toBe('session_replaced');
    moved.startHeartbeats(HEARTBEAT_MS / 2);

    const completed = nextEvent(a.bus, jobEvent(record.job_id, 'Completed'), 10_000, 'Completed heard on A');
    moved.send(jobResultMessage(first.nodeId!, record.job_id, 1, 'Completed', 'done'));
    await moved.next('JobResultAck', 10_000);
    await completed;
    expect(await a.api.jobAttempts(record.job_id)).toHaveLength(1);
    // Never shown twice: only B lists it.
    expect(a.api.listNodes().some((n) => n.node_id === first.nodeId && n.state !== 'dead')).toBe(false);
    expect(b.api.listNodes().filter((n) => n.node_id === first.nodeId)).toHaveLength(1);
  });

  it('disconnects a node on B when its token is revoked on A', async () => {
    const registration = await a.tokenAdmin.mint({ role: 'node', ttlSeconds: 600 });
    const node = await NodeClient.connect(b.nodeUrls[0]!);
    clients.push(node);
    await node.register({ token: registration.token });
    node.startHeartbeats(HEARTBEAT_MS / 2);
    expect(decodeJwt(registration.token).jti).toBe(registration.jti);
    await a.tokenAdmin.revoke(registration.jti, 'compromised');
    await node.closedWithin(5_000);
  });

  it('resumes on B an artifact upload cut off on A, serves it identical through A, and refuses a wrong digest', async () => {
    const chunk = 256 * 1024;
    const bytes = randomBytes(12 * chunk);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const v2 = { protocolVersions: [1, 2], wireFeatures: ['artifacts'] };
    const first = await NodeClient.connect(a.nodeUrls[0]!);
    clients.push(first);
    const ack = await first.register({ token: await a.tokens.mintRegistrationToken({ ttlSeconds: 600 }), tags: { lane: 'artifacts' }, ...v2 });
    expect(ack.data.wire_features).toContain('artifacts');
    first.startHeartbeats(HEARTBEAT_MS / 2);
    const job = laneJob('artifacts', ['make']);
    const record = await a.api.submitJob({ ...job, job: { ...job.job, artifacts: [{ path: 'dist.bin' }] } });
    const { message } = await first.next('JobAssignment', 10_000);
    const jobId = message.data.job_id;
    const running = nextEvent(b.bus, jobEvent(jobId, 'Running'), 10_000, 'Running heard on B');
    first.send({ type: 'JobAccepted', data: { job_id: jobId, attempt: 1 } });
    await running;

    const start = { job_id: jobId, attempt: 1, artifact_id: randomUUID(), name: 'dist.bin', size: bytes.length, sha256 };
    const send = (node: NodeClient, from: number, to: number): void => {
      for (let offset = from; offset < to; offset += chunk) {
        node.send({ type: 'ArtifactChunk', data: { artifact_id: start.artifact_id, offset, data: bytes.subarray(offset, offset + chunk).toString('base64') } });
      }
    };
    first.send({ type: 'ArtifactStart', id: 's-1', data: start });
    expect((await first.next('ArtifactAck')).message.data).toMatchObject({ received: 0, complete: false });
    send(first, 0, 9 * chunk);
    // Half a window (2 MiB) stored: an Ack; a Start again says exactly how much A stored.
    expect((await first.next('ArtifactAck')).message.data.received).toBe(8 * chunk);
    first.send({ type: 'ArtifactStart', id: 's-2', data: start });
    expect((await first.next('ArtifactAck')).message.data.received).toBe(9 * chunk);
    first.destroy();

    // The node comes back through B, which never saw the upload: NATS says where it stands.
    const moved = await NodeClient.connect(b.nodeUrls[0]!);
    clients.push(moved);
    await moved.register({ token: first.sessionToken!, resume: { node_id: first.nodeId!, running_jobs: [jobId], unacked_results: [] }, ...v2 });
    moved.startHeartbeats(HEARTBEAT_MS / 2);
    moved.send({ type: 'ArtifactStart', id: 's-3', data: start });
    expect((await moved.next('ArtifactAck', 10_000)).message.data).toMatchObject({ received: 9 * chunk, complete: false });
    send(moved, 9 * chunk, bytes.length);
    moved.send({ type: 'ArtifactEnd', id: 'e-1', data: { artifact_id: start.artifact_id } });
    expect((await moved.next('ArtifactAck', 10_000)).message.data).toMatchObject({ received: bytes.length, complete: true });

    // Another artifact whose bytes are not its digest: refused, and not listed.
    const bad = { ...start, artifact_id: randomUUID(), name: 'bad.bin', size: chunk, sha256: 'a'.repeat(64) };
    moved.send({ type: 'ArtifactStart', id: 's-4', data: bad });
    await moved.next('ArtifactAck');
    moved.send({ type: 'ArtifactChunk', data: { artifact_id: bad.artifact_id, offset: 0, data: bytes.subarray(0, chunk).toString('base64') } });
    moved.send({ type: 'ArtifactEnd', id: 'e-2', data: { artifact_id: bad.artifact_id } });
    const refused = await moved.next('Error', 10_000);
    expect(refused.message.data).toMatchObject({ code: 'artifact_rejected', field: 'data.sha256' });

    // Listed and served through A, byte for byte, whole and by range.
    const token = await a.tokens.mintApiToken({ role: 'viewer', ttlSeconds: 600 });
    const get = (path: string, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(`${a.httpUrl}/v1/jobs/${jobId}/artifacts${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
    expect(await (await get('')).json()).toEqual([{ artifact_id: start.artifact_id, attempt: 1, name: 'dist.bin', size: bytes.length, sha256 }]);
    const whole = await get('/dist.bin');
    expect(whole.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await whole.arrayBuffer()), bytes)).toBe(0);
    const part = await get('/dist.bin', { range: 'bytes=2000000-2999999' });
    expect(part.status).toBe(206);
    expect(Buffer.compare(Buffer.from(await part.arrayBuffer()), bytes.subarray(2_000_000, 3_000_000))).toBe(0);

    moved.send(jobResultMessage(first.nodeId!, record.job_id, 1));
    await moved.next('JobResultAck', 10_000);
  });

  it("sweeps, in a replica's duties, an upload a process that is gone left in NATS", async () => {
    // A second a sweep: the upload is idle two seconds after its last chunk.
    await replicas.start('replica-c', { artifactAbandonAfterMs: 2_000 });
    const nc = await connect({ servers: nats.url });
    try {
      const store = await ObjectArtifactStore.open({ nc, maxArtifactBytes: 1 << 20 });
      const bytes = randomBytes(100_000);
      // Of a job no replica knows (an attempt that can never resume).
      const start = { job_id: randomUUID(), attempt: 1, artifact_id: randomUUID(), name: 'left.bin', size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
      const key = `${start.job_id}.1.${start.artifact_id}`;
      // The purge that ends its removal, heard on the KV bucket's subject.
      const purged = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the upload was not swept within 15 s')), 15_000);
        nc.subscribe(`$KV.${ARTIFACTS_BUCKET}.${key}`, {
          callback: (_err, m) => {
            if (m.headers?.get('KV-Operation') !== 'PURGE') return;
            clearTimeout(timer);
            resolve();
          },
        });
      });
      await store.start(start);
      await store.write(start.artifact_id, 0, bytes.subarray(0, 60_000));
      await store.close();
      await purged;
      // Gone from NATS: a Start of it begins afresh.
      const again = await ObjectArtifactStore.open({ nc, maxArtifactBytes: 1 << 20 });
      expect(await again.start(start)).toEqual({ received: 0 });
      await again.drop(start.artifact_id);
    } finally {
      await nc.close();
    }
  });
});
