// The cluster format guard against real nats-server processes (one per test: the stored format
// outlives replicas, which is the point). An older build is simulated by writing its lease, or the
// stored format, straight into KV: a replica refuses to start beside a live peer of another
// format (or none) and on data of another format, starts beside a peer of its own, shows each
// replica's version and format in GET /v1/cluster, and reports a peer of another format that
// joins later. `muster serve` ends non-zero with the refusal.
import { readFileSync } from 'node:fs';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ClusterView } from '../../../supervisor/admin/wire-types.js';
import { CLUSTER_FORMAT } from '../../../supervisor/cluster/cluster-format.js';
import { EXIT_STORE_UNUSABLE } from '../../../supervisor/store/store-unusable.js';
import type { ControlPlane } from '../../../supervisor/control-plane.js';
import { packageVersion } from '../../../supervisor/package-version.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { runMuster } from '../../e2e/harness.js';
import { nextEvent } from './await-event.js';
import { capturedLogger } from './captured-logger.js';
import { CLUSTER_SECRET, Replicas } from './replica-fixture.js';

// The names are stored formats themselves: written here as an older build would find them.
const LEASES = 'muster-leases';
const STORED = 'muster-cluster';
// Long enough that a lease written by the test cannot age out while a replica starts on a loaded machine.
const TTL_MS = 60_000;
const LEASE = { leaseTtlMs: TTL_MS, leaseRenewMs: 2_000 };
const OURS = packageVersion();

let nats: NatsServer;
let nc: NatsConnection;
const replicas = new Replicas(() => nats.url);

beforeEach(async () => {
  nats = await NatsServer.start();
  nc = await connect({ servers: nats.url });
});

afterEach(async () => {
  await replicas.stopAll();
  await nc?.close();
  await nats?.stop();
});

/** A KV bucket as the replicas open it (kv-cas.ts): one value per key, reads from the leader. */
const bucket = (name: string, ttl: number): Promise<KV> => new Kvm(nc).create(name, { history: 1, replicas: 1, ttl, allow_direct: false });

/** The lease a replica of another build holds; `format` undefined: a build from before cluster formats. */
async function peerLease(id: string, version: string, format?: number): Promise<KV> {
  const kv = await bucket(LEASES, TTL_MS);
  const now = new Date().toISOString();
  await kv.put(id, JSON.stringify({ replica_id: id, started_at: now, renewed_at: now, node_count: 2, version, ...(format === undefined ? {} : { format }) }));
  return kv;
}

async function refusal(id: string): Promise<Error> {
  const err = await replicas.start(id, LEASE).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `${id} started`).toBeInstanceOf(Error);
  return err as Error;
}

/** What a refused replica left: no lease of its own (given up), no stream but the leases' and the stored format's. */
async function expectNothingWritten(id: string): Promise<void> {
  const leases = await new Kvm(nc).open(LEASES);
  expect((await leases.get(id))?.operation ?? 'none', `${id}'s lease`).not.toBe('PUT');
  const jsm = await jetstreamManager(nc);
  const streams = (await jsm.streams.names().next()).filter((name) => name !== `KV_${LEASES}` && name !== `KV_${STORED}`);
  expect(streams, 'streams opened').toEqual([]);
}

async function clusterView(plane: ControlPlane): Promise<ClusterView> {
  const token = await plane.tokens.mintApiToken({ role: 'viewer', ttlSeconds: 600 });
  const response = await fetch(`${plane.httpUrl}/v1/cluster`, { headers: { authorization: `Bearer ${token}` } });
  expect(response.status).toBe(200);
  return (await response.json()) as ClusterView;
}

describe('cluster format guard', () => {
  it('refuses to start beside a live replica of a build from before cluster formats, naming it, its version and ours', async () => {
    await peerLease('old-1', '0.0.9');
    const err = await refusal('new-1');
    expect(err.name).toBe('MusterError');
    expect(err.message).toBe(
      `replica old-1 (muster 0.0.9) is live with cluster format none (a build from before cluster formats), ` +
        `this replica new-1 (muster ${OURS}) has cluster format ${CLUSTER_FORMAT}: ` +
        `replicas of different formats misread each other's jobs, leases and events, so this one does not start; ` +
        `stop replica old-1 and every other replica of the older build before starting this one, or upgrade all replicas at once (stop all, then start all on muster ${OURS}) ` +
        `(the lease of a replica killed rather than stopped stays up to ${TTL_MS} ms)`,
    );
    await expectNothingWritten('new-1');
  }, 30_000);

  it('refuses to start beside a live replica of a newer format: this build is the old one', async () => {
    await peerLease('newer-1', '9.0.0', CLUSTER_FORMAT + 1);
    const err = await refusal('new-2');
    expect(err.message).toMatch(new RegExp(`^replica newer-1 \\(muster 9\\.0\\.0\\) is live with cluster format ${CLUSTER_FORMAT + 1}, this replica new-2 .*has cluster format ${CLUSTER_FORMAT}:`));
    expect(err.message).toMatch(/this build is older than the cluster's: run muster 9\.0\.0 here too, or upgrade all replicas at once/);
    await expectNothingWritten('new-2');
  }, 30_000);

  it("starts beside a replica of its own format; GET /v1/cluster shows each replica's version and format; the first stamps the data", async () => {
    const a = await replicas.start('same-a', { ...LEASE, http: '127.0.0.1:0' });
    const b = await replicas.start('same-b', { ...LEASE, http: '127.0.0.1:0' });
    const stamp = (await (await new Kvm(nc).open(STORED)).get('format'))?.json<Record<string, unknown>>();
    expect(stamp).toMatchObject({ format: CLUSTER_FORMAT, version: OURS, replica_id: 'same-a' });
    // Each lists the other from its lease, read every renewal interval.
    for (const plane of [a, b]) {
      await expect.poll(async () => (await clusterView(plane)).replicas.length, { timeout: 10_000 }).toBe(2);
      expect((await clusterView(plane)).replicas).toEqual([
        expect.objectContaining({ control_plane_id: 'same-a', version: OURS, cluster_format: CLUSTER_FORMAT }),
        expect.objectContaining({ control_plane_id: 'same-b', version: OURS, cluster_format: CLUSTER_FORMAT }),
      ]);
    }
  }, 30_000);

  it('refuses data stored under another format with no replica live, and says what it is', async () => {
    const kv = await bucket(STORED, 0);
    await kv.put('format', JSON.stringify({ format: CLUSTER_FORMAT + 1, version: '9.0.0', replica_id: 'gone-1', written_at: '2026-11-30T10:00:00.000Z' }));
    const err = await refusal('new-3');
    expect(err.name).toBe('MusterError');
    expect(err.message).toBe(
      `the cluster data on this NATS is of cluster format ${CLUSTER_FORMAT + 1} (KV muster-cluster key format, written by muster 9.0.0 (replica gone-1, 2026-11-30T10:00:00.000Z)), ` +
        `this replica new-3 (muster ${OURS}) has cluster format ${CLUSTER_FORMAT} and would misread it, so it does not start: ` +
        `run replicas of the build that wrote it, or, to start afresh and lose its jobs, tokens and artifacts, ` +
        `remove every Muster stream (nats stream ls: KV_muster-*, OBJ_muster-*, MUSTER_*) before starting this build`,
    );
    await expectNothingWritten('new-3');
  }, 30_000);

  it('reports a replica of another format that joins later, in an error line and in GET /v1/cluster, and keeps serving', async () => {
    const { logger, lines } = capturedLogger();
    const a = await replicas.start('running-a', { ...LEASE, http: '127.0.0.1:0' }, logger);
    const reported = nextEvent(lines, (line) => line.replica === 'late-old', 10_000, 'an error line about late-old');
    await peerLease('late-old', '0.0.9');
    const line = await reported;
    expect(line).toMatchObject({ level: 50, replica: 'late-old', version: '0.0.9', cluster_format: null, ours: CLUSTER_FORMAT });
    expect(line.msg).toMatch(/^replica late-old \(muster 0\.0\.9\) joined with cluster format none, this replica has format \d+: .*stop it, or upgrade all replicas at once$/);
    // The view the line was told from lists it.
    expect((await clusterView(a)).replicas).toEqual([
      expect.objectContaining({ control_plane_id: 'late-old', version: '0.0.9', cluster_format: null }),
      expect.objectContaining({ control_plane_id: 'running-a', version: OURS, cluster_format: CLUSTER_FORMAT }),
    ]);
    expect(a.api.isReady()).toBe(true);
  }, 30_000);

  it('muster serve on data of another format ends with status 65, which the systemd units do not restart on', async () => {
    const kv = await bucket(STORED, 0);
    await kv.put('format', JSON.stringify({ format: CLUSTER_FORMAT + 1, version: '9.0.0', replica_id: 'gone-2', written_at: '2026-11-30T10:00:00.000Z' }));
    const dataDir = replicas.dataDir('cli-stored');
    const args = ['serve', '--nats', nats.url, '--control-plane-id', 'new-stored', '--data-dir', dataDir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0'];
    const run = await runMuster([...args, '--ws', 'off', '--grpc', 'off', '--unix', 'off', '--lease-ttl-ms', String(TTL_MS), '--lease-renew-ms', '2000'], { MUSTER_JWT_SECRET: CLUSTER_SECRET }, 20_000);
    expect(run.code, run.stderr).toBe(EXIT_STORE_UNUSABLE);
    expect(run.stderr).toMatch(/^muster: the cluster data on this NATS is of cluster format \d+ .*this replica new-stored .*would misread it/m);
    expect(readFileSync(new URL('../../../deploy/muster-replica.service', import.meta.url), 'utf8')).toMatch(new RegExp(`^RestartPreventExitStatus=${EXIT_STORE_UNUSABLE}$`, 'm'));
  }, 30_000);

  it('muster serve ends with status 1 and the refusal on stderr', async () => {
    await peerLease('old-cli', '0.0.9');
    const dataDir = replicas.dataDir('cli');
    const args = ['serve', '--nats', nats.url, '--control-plane-id', 'new-cli', '--data-dir', dataDir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0'];
    const run = await runMuster([...args, '--ws', 'off', '--grpc', 'off', '--unix', 'off', '--lease-ttl-ms', String(TTL_MS), '--lease-renew-ms', '2000'], { MUSTER_JWT_SECRET: CLUSTER_SECRET }, 20_000);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/^muster: replica old-cli \(muster 0\.0\.9\) is live with cluster format none .*this replica new-cli .*stop replica old-cli .*upgrade all replicas at once/m);
    await expectNothingWritten('new-cli');
  }, 30_000);
});
