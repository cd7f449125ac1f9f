// Replica leases against real nats-server processes: epochs, refusal of a second process with
// one id, peers aging out, self-fencing before the lease can age out, and no judging of peers
// until a full TTL after the connection came back.
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { natsFixture } from './nats-fixture.js';
import { MusterError } from '../../../protocol/errors.js';
import { LEASE_BUCKET, ReplicaLease, type LeaseEvent, type ReplicaLeaseOptions } from '../../../supervisor/cluster/replica-lease.js';
import { CLUSTER_FORMAT } from '../../../supervisor/cluster/cluster-format.js';
import { TcpProxy } from './tcp-proxy.js';
import { nextEvent, until } from './await-event.js';

const TTL = 1_500;
const RENEW = 250;
const MARGIN = 400;

const nats = natsFixture();
const closers = nats.closers;
const natsConnection = (url?: string): Promise<NatsConnection> => nats.connection(url);
let bucketSeq = 0;

async function lease(nc: NatsConnection, replicaId: string, bucket: string, extra: Partial<ReplicaLeaseOptions> = {}): Promise<ReplicaLease> {
  const l = await ReplicaLease.acquire({ nc, replicaId, bucket, version: '0.1.0', ttlMs: TTL, renewMs: RENEW, marginMs: MARGIN, ...extra });
  closers.push(() => l.close());
  return l;
}

const bucketName = (): string => `${LEASE_BUCKET}-t${++bucketSeq}`;
const is = <K extends LeaseEvent['kind']>(kind: K) => (e: LeaseEvent): e is Extract<LeaseEvent, { kind: K }> => e.kind === kind;
const listed = (l: ReplicaLease): string => `it lists ${l.peers().map((p) => `${p.id}@${p.epoch}`).join(', ')}`;
/** Until `l`'s last poll of the leases lists `id` (the poll runs every RENEW ms; a few polls at most). */
const untilListed = (l: ReplicaLease, id: string): Promise<void> =>
  until(l, () => l.peers().some((p) => p.id === id), 5_000, `${l.replicaId} listing ${id}`, () => listed(l));

describe('ReplicaLease', () => {
  it('takes the lease with create: the epoch is its revision, stored with the replica facts', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const a = await lease(nc, 'replica-a', bucket, { nodeCount: () => 7 });
    const kv = await new Kvm(nc).open(bucket);
    const entry = await kv.get('replica-a');
    expect(entry?.revision).toBe(a.epoch);
    const value = entry?.json<Record<string, unknown>>();
    expect(value).toMatchObject({ replica_id: 'replica-a', node_count: 7, version: '0.1.0', format: CLUSTER_FORMAT });
    expect(typeof value?.started_at).toBe('string');
    const status = await kv.status();
    expect(status.ttl).toBe(TTL);
  });

  it('refuses a second process with the same replica id while the first lease is live', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const a = await lease(nc, 'replica-a', bucket);
    const err = await ReplicaLease.acquire({ nc, replicaId: 'replica-a', bucket, version: '0.1.0', ttlMs: TTL, renewMs: RENEW, marginMs: MARGIN }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MusterError);
    expect((err as Error).message).toMatch(/replica id replica-a already holds a live lease.*two processes with one replica id/);
    // Once the first gives its lease up, the id can be taken again, with a higher epoch.
    const first = a.epoch ?? 0;
    await a.close();
    const again = await lease(nc, 'replica-a', bucket);
    expect(again.epoch).toBeGreaterThan(first);
  });

  it('refuses a replica id that cannot be a KV key, and takes a hostname with dots', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const err = await ReplicaLease.acquire({ nc, replicaId: 'my replica*', bucket, version: '0.1.0', ttlMs: TTL, renewMs: RENEW, marginMs: MARGIN }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MusterError);
    expect((err as Error).message).toMatch(/replica id "my replica\*" cannot be a key/);
    const dotted = await lease(nc, 'ci-1.example.com-x7k2', bucket);
    expect(dotted.epoch).toBeGreaterThan(0);
  });

  it('refuses a bucket whose TTL differs from this replica’s', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    await lease(nc, 'replica-a', bucket);
    const err = await ReplicaLease.acquire({ nc, replicaId: 'replica-b', bucket, version: '0.1.0', ttlMs: 3_000, renewMs: RENEW }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MusterError);
    expect((err as Error).message).toMatch(/same lease TTL\. Start this one with --lease-ttl-ms 1500 .*nats kv rm muster-leases-t\d+/);
  });

  it('gives the lease up on close; with its connection away it leaves the lease to age out and sends nothing', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const kv = await new Kvm(nc).open(bucket);
    const a = await lease(nc, 'replica-a', bucket);
    expect(await a.close()).toBe('released');
    expect((await kv.get('replica-a'))?.operation).toBe('DEL'); // its nodes may be claimed at once

    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const b = await lease(await natsConnection(proxy.url), 'replica-b', bucket);
    // Judging starts a full TTL after connecting; its end is how the lease tells of the disconnect.
    if (!b.mayJudge()) await nextEvent(b, (e) => e.kind === 'judging' && e.may, TTL * 2, 'B judging');
    const away = nextEvent(b, (e) => e.kind === 'judging' && !e.may, 5_000, 'B hearing the disconnect');
    proxy.cut();
    await away;
    // A delete now would wait for NATS or its timeout, holding the replica's shutdown for seconds.
    expect(await b.close()).toBe('aging-out');
    proxy.heal();
    const entry = await kv.get('replica-b');
    expect(entry?.operation).toBe('PUT'); // still there: it goes when the bucket ages it out
  });

  it('renews at the last revision, keeping its epoch; peers see each other', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const a = await lease(nc, 'replica-a', bucket, { nodeCount: () => 3 });
    const b = await lease(nc, 'replica-b', bucket, { nodeCount: () => 5 });
    const epoch = a.epoch;
    const first = await nextEvent(a, is('renewed'), 2_000, 'renewal');
    const second = await nextEvent(a, is('renewed'), 2_000, 'renewal');
    expect(second.revision).toBeGreaterThan(first.revision);
    expect(a.epoch).toBe(epoch);
    // The next poll of A lists both.
    await untilListed(a, 'replica-b');
    const peers = a.peers();
    expect(peers.map((p) => [p.id, p.epoch, p.nodeCount])).toEqual([
      ['replica-a', a.epoch, 3],
      ['replica-b', b.epoch, 5],
    ]);
  });

  it('reports a peer whose lease aged out (it stopped renewing) once, and only after its TTL', async () => {
    const nc = await natsConnection();
    const bucket = bucketName();
    const a = await lease(nc, 'replica-a', bucket);
    if (!a.mayJudge()) await nextEvent(a, (e) => e.kind === 'judging' && e.may, TTL + 1_000, 'judging');
    const b = await lease(nc, 'replica-b', bucket);
    const bEpoch = b.epoch ?? -1;
    expect(await a.isLive('replica-b', bEpoch)).toBe(true);
    // Wait until A has seen B in a poll, then B dies without giving its lease up.
    await untilListed(a, 'replica-b');
    const last = await nextEvent(b, is('renewed'), 2_000, 'renewal of B');
    // The server stored B's last renewal no earlier than B sent it: its TTL counts from then at
    // the earliest (a renewal still in flight at the close only moves the age-out later).
    const sentAt = performance.now() - last.tookMs;
    await b.close({ release: false });
    // Deadlines only: B's lease goes a TTL after its last renewal; on a loaded machine a stall
    // may fence A meanwhile, and A then judges again only a full TTL after it is unfenced.
    const waited = a.whenGone('replica-b', bEpoch, 15_000);
    const gone = await nextEvent(a, is('peer-gone'), 15_000, 'peer-gone of B');
    expect(gone).toEqual({ kind: 'peer-gone', id: 'replica-b', epoch: bEpoch });
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(TTL - 20);
    expect(await waited).toBe(true);
    expect(await a.isLive('replica-b', bEpoch)).toBe(false);
  });

  it('lists a peer that joins, and reports it gone, while the lease bucket is written all the time', async () => {
    const bucket = bucketName();
    const a = await lease(await natsConnection(), 'replica-a', bucket);
    if (!a.mayJudge()) await nextEvent(a, (e) => e.kind === 'judging' && e.may, TTL + 1_000, 'judging');
    // Another client writes to the bucket without pause (a value that is no lease), so the server
    // always has a newer write than the one it delivers, as renewals are on a loaded machine: a
    // poll that listed the keys with a consumer (`kv.keys()`) then did not end, and A saw no change.
    const writer = await new Kvm(await natsConnection()).open(bucket);
    let writing = true;
    const writes = (async () => {
      while (writing) await writer.put('noise', 'x');
    })();
    closers.push(async () => {
      writing = false;
      await writes;
    });
    const b = await lease(await natsConnection(), 'replica-b', bucket);
    const bEpoch = b.epoch ?? -1;
    await untilListed(a, 'replica-b');
    expect(a.peers().map((p) => p.id)).toEqual(['replica-a', 'replica-b']);
    await b.close({ release: false });
    const gone = await nextEvent(a, is('peer-gone'), 15_000, 'peer-gone of B');
    expect(gone).toEqual({ kind: 'peer-gone', id: 'replica-b', epoch: bEpoch });
    await until(a, () => !a.peers().some((p) => p.id === 'replica-b'), 5_000, 'A no longer listing replica-b', () => listed(a));
  });

  it('a replica cut off from NATS fences itself before its lease ages out, then takes a new epoch and waits a full TTL to judge', async () => {
    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const bucket = bucketName();
    const observer = await lease(await natsConnection(), 'replica-b', bucket);
    const a = await lease(await natsConnection(proxy.url), 'replica-a', bucket);
    const firstEpoch = a.epoch ?? -1;
    const events: string[] = [];
    a.subscribe((e) => {
      if (e.kind !== 'renewed' && e.kind !== 'error') events.push(e.kind === 'judging' ? `judging:${e.may}` : e.kind);
    });
    if (!observer.mayJudge()) await nextEvent(observer, (e) => e.kind === 'judging' && e.may, TTL + 1_000, 'observer judging');
    if (!a.mayJudge()) await nextEvent(a, (e) => e.kind === 'judging' && e.may, TTL + 1_000, 'A judging');
    await untilListed(observer, 'replica-a');

    await nextEvent(a, is('renewed'), 2_000);
    events.length = 0;
    proxy.cut();
    const fenced = await nextEvent(a, is('fenced'), TTL * 2, 'fenced');
    const fencedAt = performance.now();
    expect(fenced.reason).toBe('renewal-overdue');
    expect(a.isFenced()).toBe(true);
    expect(a.mayJudge()).toBe(false);
    // How soon after the last acknowledged renewal it fenced is a timing figure, not asserted
    // (a loaded machine delays timers): what must hold is that it fenced before its lease aged
    // out as another replica sees it, below.

    // A deadline only (A's lease goes a TTL after its last renewal; the observer polls every
    // RENEW ms), short of the test's own 30 s so that a miss says what was missed.
    const gone = await nextEvent(observer, is('peer-gone'), 10_000, 'peer-gone of A');
    const goneAt = performance.now();
    expect(gone).toMatchObject({ id: 'replica-a', epoch: firstEpoch });
    expect(fencedAt).toBeLessThan(goneAt);

    // The three come in one turn: listen for all of them before healing.
    const lost = nextEvent(a, is('lease-lost'), 5_000, 'lease-lost');
    const taken = nextEvent(a, is('lease-taken'), 5_000, 'lease-taken');
    const unfenced = nextEvent(a, is('unfenced'), 5_000, 'unfenced');
    proxy.heal();
    expect((await lost).epoch).toBe(firstEpoch);
    expect((await taken).epoch).toBeGreaterThan(firstEpoch);
    expect((await unfenced).epoch).toBe(a.epoch);
    const unfencedAt = performance.now();
    expect(a.mayJudge()).toBe(false);
    await nextEvent(a, (e) => e.kind === 'judging' && e.may, TTL * 2, 'judging again');
    expect(performance.now() - unfencedAt).toBeGreaterThanOrEqual(TTL - 20);
    // Judging stopped at the disconnect, before the fence.
    expect(events).toEqual(['judging:false', 'fenced', 'lease-lost', 'lease-taken', 'unfenced', 'judging:true']);
  });

  it('fences on time when the path to NATS hangs without a disconnect', async () => {
    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const bucket = bucketName();
    // A longer TTL and a wide margin: the thaw below must come before the lease ages out, and the
    // fence timer and this test's turn after it may run late on a loaded machine (fenced 1 s
    // after the last acknowledged renewal was sent, gone 3 s after it at the earliest).
    const ttl = 3_000;
    const margin = 2_000;
    const a = await lease(await natsConnection(proxy.url), 'replica-a', bucket, { ttlMs: ttl, marginMs: margin });
    if (!a.mayJudge()) await nextEvent(a, (e) => e.kind === 'judging' && e.may, ttl + 1_000, 'judging');
    const last = await nextEvent(a, is('renewed'), 2_000, 'renewal');
    const sentAt = performance.now() - last.tookMs;
    const judging = nextEvent(a, (e) => e.kind === 'judging' && !e.may, ttl * 2, 'judging stops');
    proxy.freeze();
    await nextEvent(a, is('fenced'), ttl * 2, 'fenced');
    // Fenced by its own clock, with no disconnect to tell it: how soon is a timing figure (not asserted).
    await judging;
    expect(a.mayJudge()).toBe(false);
    // Thawed before the lease aged out: the same epoch renews again.
    const epoch = a.epoch;
    const unfenced = nextEvent(a, is('unfenced'), 5_000, 'unfenced');
    proxy.thaw();
    const thawedAfter = Math.round(performance.now() - sentAt);
    expect((await unfenced).epoch, `thawed ${thawedAfter} ms after the last acknowledged renewal was sent (the lease lives ${ttl} ms from then)`).toBe(epoch);
  });

  it('is fenced when asked after the event loop was blocked past the deadline, before its timer runs', async () => {
    const bucket = bucketName();
    // Fenced 700 ms after a renewal is sent unless one is acknowledged: short, since the stall
    // below is a busy loop that long, and long enough that a loaded machine's acks come in time.
    const ttl = 1_000;
    const margin = 300;
    const a = await lease(await natsConnection(), 'replica-a', bucket, { ttlMs: ttl, renewMs: 100, marginMs: margin });
    // A renewal acknowledged before its own fence deadline (a slower one leaves the lease fenced).
    await nextEvent(a, (e) => e.kind === 'renewed' && !a.isFenced(), 5_000, 'a renewal acknowledged in time');
    const ackAt = performance.now();
    // Heard from the renewal on: on a loaded machine a late renewal before it may fence and unfence it once already.
    const fenced: LeaseEvent[] = [];
    a.subscribe((e) => {
      if (e.kind === 'fenced') fenced.push(e);
    });
    expect(a.isFenced()).toBe(false);
    // A stall (a long GC pause, a blocking call): no timer and no renewal ack can run.
    while (performance.now() < ackAt + ttl - margin + 20) {
      // busy
    }
    expect(a.isFenced()).toBe(true);
    expect(fenced).toEqual([{ kind: 'fenced', reason: 'renewal-overdue' }]);
    expect(a.mayJudge()).toBe(false);
    // Renewals resume after the stall: unfenced again (under a new epoch if the lease aged out meanwhile).
    await nextEvent(a, is('unfenced'), 5_000, 'unfenced');
  });

  it('a peer that went while this replica was cut off is reported only once it may judge again', async () => {
    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const bucket = bucketName();
    const a = await lease(await natsConnection(proxy.url), 'replica-a', bucket);
    const b = await lease(await natsConnection(), 'replica-b', bucket);
    const bEpoch = b.epoch ?? -1;
    await untilListed(a, 'replica-b');
    const events: string[] = [];
    a.subscribe((e) => {
      if (e.kind === 'judging') events.push(`judging:${e.may}`);
      else if (e.kind === 'peer-gone') events.push(`peer-gone:${e.id}`);
      else if (e.kind === 'unfenced') events.push('unfenced');
    });
    proxy.cut();
    await b.close({ release: false }); // B dies while A cannot see
    // Watch B's lease go from a third replica, then let A back.
    const witness = await lease(await natsConnection(), 'replica-w', bucket);
    expect(await witness.whenGone('replica-b', bEpoch, TTL * 3)).toBe(true);
    const unfenced = nextEvent(a, is('unfenced'), 5_000, 'unfenced');
    proxy.heal();
    await unfenced;
    const unfencedAt = performance.now();
    const gone = await nextEvent(a, is('peer-gone'), TTL * 3, 'peer-gone after judging');
    expect(gone).toEqual({ kind: 'peer-gone', id: 'replica-b', epoch: bEpoch });
    expect(performance.now() - unfencedAt).toBeGreaterThanOrEqual(TTL - 20);
    expect(events.slice(events.indexOf('unfenced'))).toEqual(['unfenced', 'judging:true', 'peer-gone:replica-b']);
  });

  it('reports a conflict when, after a loss, another process took the same id', async () => {
    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const bucket = bucketName();
    const a = await lease(await natsConnection(proxy.url), 'replica-a', bucket);
    proxy.cut();
    await nextEvent(a, is('fenced'), TTL * 2, 'fenced');
    // Another process with the same id takes the lease once A's has aged out.
    const direct = await natsConnection();
    const observer = await lease(direct, 'replica-b', bucket);
    expect(await observer.whenGone('replica-a', a.epoch ?? -1, TTL * 3)).toBe(true);
    const twin = await ReplicaLease.acquire({ nc: direct, replicaId: 'replica-a', bucket, version: '0.1.0', ttlMs: TTL, renewMs: RENEW, marginMs: MARGIN });
    closers.push(() => twin.close());
    proxy.heal();
    const conflict = await nextEvent(a, is('conflict'), 5_000, 'conflict');
    expect(conflict.error.message).toMatch(/two processes with one replica id/);
    expect(a.isFenced()).toBe(true);
  });
});
