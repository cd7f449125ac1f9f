// The cluster's artifact store against the ArtifactStore contract on a real nats-server, and what
// only it promises: an upload begun through one replica's store is resumed and completed through
// another's (its state is in NATS), a completed artifact is an object any object store client
// reads, an upload one replica began and left is swept by another (its chunks purged from the
// stream; idle counted from its last chunk), sweepers racing remove it once, one left half-way is
// finished, and memory stays flat while a large artifact streams
// in and out.
import { createHash, randomBytes } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { describe, expect, it } from 'vitest';
import { ARTIFACTS_BUCKET, ObjectArtifactStore } from '../../../supervisor/cluster/object-artifact-store.js';
import { MAX_ARTIFACT_BYTES, artifactOf, artifactStoreContract, sweepRule, upload } from '../artifacts/artifact-store-contract.js';
import { natsFixture } from './nats-fixture.js';

const nats = natsFixture();

// What is held, not garbage: collected on demand, after a few turns of the event loop (the NATS
// client holds a large buffer for a moment while it takes a message in), the least of three.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
async function held(): Promise<number> {
  let least = Number.MAX_SAFE_INTEGER;
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    least = Math.min(least, heapUsed + arrayBuffers);
  }
  return least;
}

let opened = 0;
const bucketOf = new WeakMap<ObjectArtifactStore, string>();
async function openStore(bucket = `${ARTIFACTS_BUCKET}-${++opened}`, maxArtifactBytes = MAX_ARTIFACT_BYTES): Promise<ObjectArtifactStore> {
  const store = await ObjectArtifactStore.open({ nc: await nats.connection(), maxArtifactBytes, bucket });
  bucketOf.set(store, bucket);
  return store;
}

artifactStoreContract(
  'ObjectArtifactStore',
  () => openStore(),
  // A restart: a new store on a new connection, the same buckets.
  async (old) => {
    await old.close();
    return openStore(bucketOf.get(old as ObjectArtifactStore));
  },
);

/** `count` stores on one new bucket, as that many replicas open it. */
async function replicasSharing(count: number): Promise<{ bucket: string; stores: ObjectArtifactStore[] }> {
  const bucket = `${ARTIFACTS_BUCKET}-${++opened}`;
  const stores: ObjectArtifactStore[] = [];
  for (let i = 0; i < count; i++) stores.push(await openStore(bucket));
  return { bucket, stores };
}

describe('ObjectArtifactStore across replicas', () => {
  it('resumes on another replica an upload begun on one, from what NATS holds, and completes it there', async () => {
    const { bucket, stores: [a, b] } = await replicasSharing(2);
    const bytes = randomBytes(300_000);
    const start = artifactOf(bytes);
    await a.start(start);
    expect(await upload(a, start, bytes.subarray(0, 120_000))).toBe(120_000);
    // B has never seen it: NATS says where it stands, and B rebuilds the digest so far.
    expect(await b.start(start)).toEqual({ received: 120_000 });
    expect(await upload(b, start, bytes, 120_000)).toBe(bytes.length);
    // A still thinks it stands at 120 000: its chunk there is refused by NATS, and A learns where it is.
    expect(await a.write(start.artifact_id, 120_000, bytes.subarray(120_000, 130_000))).toEqual({ received: bytes.length });
    const record = await b.end(start.artifact_id);
    expect(await a.list(start.job_id)).toEqual([record]);
    expect(Buffer.compare(await buffer((await a.read(start.job_id, start.name))!.body), bytes)).toBe(0);
    // An object of the object store, whole and with the digest @nats-io/obj checks on its own.
    const objects = await new Objm(await nats.connection()).open(bucket);
    const blob = await objects.getBlob(`${start.job_id}/1/${start.artifact_id}`);
    expect(Buffer.compare(Buffer.from(blob!), bytes)).toBe(0);
  });

  it('drops an upload another replica began', async () => {
    const { stores: [a, b] } = await replicasSharing(2);
    const bytes = randomBytes(50_000);
    const start = artifactOf(bytes);
    await a.start(start);
    await upload(a, start, bytes.subarray(0, 30_000));
    await b.drop(start.artifact_id);
    expect(await a.start(start)).toEqual({ received: 0 });
  });

  /** The chunk subjects of `bucket`'s object store stream that hold a message, and how many each. */
  async function chunkSubjects(bucket: string): Promise<Record<string, number>> {
    const jsm = await jetstreamManager(await nats.connection());
    const info = await jsm.streams.info(`OBJ_${bucket}`, { subjects_filter: `$O.${bucket}.C.>` });
    return info.state.subjects ?? {};
  }

  it('sweeps on another replica an upload one began and left: its chunks are purged, a resumable one stays', async () => {
    const { bucket, stores: [a, b] } = await replicasSharing(2);
    const bytes = randomBytes(600_000);
    const left = artifactOf(bytes);
    await a.start(left);
    expect(await upload(a, left, bytes.subarray(0, 400_000))).toBe(400_000);
    const resumable = artifactOf(bytes);
    await a.start(resumable);
    expect(await upload(a, resumable, bytes.subarray(0, 200_000))).toBe(200_000);
    const done = artifactOf(bytes.subarray(0, 100_000));
    await a.start(done);
    await upload(a, done, bytes.subarray(0, 100_000));
    await a.end(done.artifact_id);
    // 400 000 bytes in chunks of 64 KiB: 7; 200 000: 4; 100 000: 2.
    expect(Object.values(await chunkSubjects(bucket)).sort()).toEqual([2, 4, 7]);

    // Not idle yet for B (both written after the moment): nothing.
    expect(await b.sweep(sweepRule(Date.now() - 60_000))).toBe(0);
    expect(await b.sweep(sweepRule(Date.now() + 60_000, [resumable.job_id]))).toBe(1);
    expect(Object.values(await chunkSubjects(bucket)).sort()).toEqual([2, 4]);
    const kv = await new Kvm(await nats.connection()).open(bucket);
    expect((await kv.get(`${left.job_id}.1.${left.artifact_id}`))?.operation).toBe('PURGE');
    // A's own memory of it is not trusted: NATS says it begins afresh, on a new subject.
    expect(await a.start(left)).toEqual({ received: 0 });
    expect(await a.start(resumable)).toEqual({ received: 200_000 });
    expect(await upload(a, resumable, bytes, 200_000)).toBe(bytes.length);
    expect((await a.end(resumable.artifact_id)).size).toBe(bytes.length);
    expect(Buffer.compare(await buffer((await b.read(done.job_id, done.name))!.body), bytes.subarray(0, 100_000))).toBe(0);
  });

  it('counts an upload idle from its last chunk, not from its Start', async () => {
    const { bucket, stores: [a, b] } = await replicasSharing(2);
    const bytes = randomBytes(20_000);
    const start = artifactOf(bytes);
    await a.start(start);
    const kv = await new Kvm(await nats.connection()).open(bucket);
    const entry = (await kv.get(`${start.job_id}.1.${start.artifact_id}`))!;
    const started = entry.created.getTime();
    const chunks = `$O.${bucket}.C.${entry.json<{ nuid: string }>().nuid}`;
    const jsm = await jetstreamManager(await nats.connection());
    // Chunks of 100 bytes until one is stored in a later millisecond than the Start (a few round trips).
    let lastChunk = started;
    for (let offset = 0; lastChunk <= started; offset += 100) {
      await a.write(start.artifact_id, offset, bytes.subarray(offset, offset + 100));
      lastChunk = (await jsm.streams.getMessage(`OBJ_${bucket}`, { last_by_subj: chunks }))!.time.getTime();
    }
    // Idle by its Start, not by its last chunk: kept.
    expect(await b.sweep(sweepRule(lastChunk))).toBe(0);
    expect(await b.sweep(sweepRule(lastChunk + 1))).toBe(1);
  });

  it('removes an upload once when replicas sweep at the same time', async () => {
    const { bucket, stores } = await replicasSharing(3);
    const bytes = randomBytes(300_000);
    const starts = [artifactOf(bytes), artifactOf(bytes)];
    for (const start of starts) {
      await stores[0]!.start(start);
      await upload(stores[0]!, start, bytes.subarray(0, 150_000));
    }
    const rule = sweepRule(Date.now() + 60_000);
    const removed = await Promise.all(stores.map((s) => s.sweep(rule)));
    expect(removed.reduce((a, n) => a + n, 0)).toBe(2);
    expect(await chunkSubjects(bucket)).toEqual({});
    for (const start of starts) expect(await stores[1]!.start(start)).toEqual({ received: 0 });
  });

  it('finishes a removal a sweeper left half-way (entry marked abandoned, chunks still there), and a Start there begins afresh', async () => {
    const { bucket, stores: [a, b] } = await replicasSharing(2);
    const bytes = randomBytes(200_000);
    const [one, two] = [artifactOf(bytes), artifactOf(bytes)];
    const kv = await new Kvm(await nats.connection()).open(bucket);
    for (const start of [one, two]) {
      await a.start(start);
      await upload(a, start, bytes.subarray(0, 100_000));
      // What a sweeper that died after winning the entry leaves.
      const key = `${start.job_id}.1.${start.artifact_id}`;
      const entry = (await kv.get(key))!;
      await kv.update(key, JSON.stringify({ ...entry.json<Record<string, unknown>>(), state: 'abandoned' }), entry.revision);
    }
    expect(Object.keys(await chunkSubjects(bucket))).toHaveLength(2);
    expect(await a.start(two)).toEqual({ received: 0 });
    expect(Object.keys(await chunkSubjects(bucket))).toHaveLength(1);
    // Neither idle nor of an attempt that ended: the marked one is finished anyway, the fresh one kept.
    expect(await b.sweep(sweepRule(Date.now() - 60_000, [one.job_id, two.job_id]))).toBe(0);
    expect(await chunkSubjects(bucket)).toEqual({});
    expect(await b.start(one)).toEqual({ received: 0 });
    expect(await upload(a, two, bytes)).toBe(bytes.length);
    expect((await a.end(two.artifact_id)).sha256).toBe(two.sha256);
  });

  it('keeps memory flat while 32 MiB stream in and out in 256 KiB chunks, and serves a range near the end', async () => {
    const store = await openStore(undefined, 1 << 30);
    const chunk = randomBytes(256 * 1024);
    const chunks = 128;
    const hash = createHash('sha256');
    for (let i = 0; i < chunks; i++) hash.update(chunk);
    const start = artifactOf(new Uint8Array(0), { size: chunk.length * chunks, sha256: hash.digest('hex') });
    await store.start(start);
    // Measured from after the first 8 MiB: by then the NATS client's buffers have their working size.
    let before = 0;
    let most = 0;
    for (let i = 0; i < chunks; i++) {
      // A copy each time, as chunks come off the wire: a store that kept them would show.
      await store.write(start.artifact_id, i * chunk.length, Buffer.from(chunk));
      if (i === 31) before = await held();
      if (i === chunks - 1) most = Math.max(most, await held());
    }
    expect((await store.end(start.artifact_id)).size).toBe(32 * 1024 * 1024);
    let read = 0;
    const digest = createHash('sha256');
    for await (const part of (await store.read(start.job_id, start.name))!.body) {
      digest.update(part as Buffer);
      read += (part as Buffer).length;
      if (read === start.size / 2) most = Math.max(most, await held());
    }
    expect(read).toBe(start.size);
    expect(digest.digest('hex')).toBe(start.sha256);
    // Not the 24 MiB more it would take to hold the artifact: a few chunks' worth at most.
    expect(most - before).toBeLessThan(8 * 1024 * 1024);
    const at = start.size - 300_000;
    const tail = await buffer((await store.read(start.job_id, start.name, { range: { start: at, end: at + 1000 } }))!.body);
    expect(Buffer.compare(tail, chunk.subarray(at % chunk.length, (at % chunk.length) + 1000))).toBe(0);
  });
});
