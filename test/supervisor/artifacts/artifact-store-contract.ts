// The ArtifactStore contract: every store of artifacts (the data directory's now, JetStream's
// object store in a cluster) runs this suite: uploads in chunks, resumed from what the store
// has, verified at the end; every refusal `artifact_rejected` with its field, dropping the upload;
// abandoned uploads swept (an explicit `sweep` with its moment, no waiting).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MusterError } from '../../../protocol/errors.js';
import type { ArtifactStart, ArtifactStore, SweepRule } from '../../../supervisor/artifacts/artifact-store.js';

export const MAX_ARTIFACT_BYTES = 1024 * 1024;

export function artifactOf(bytes: Uint8Array, o: Partial<ArtifactStart> = {}): ArtifactStart {
  return {
    job_id: randomUUID(),
    attempt: 1,
    artifact_id: randomUUID(),
    name: 'dist.tar.gz',
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    ...o,
  };
}

/** Writes `bytes` from `from` in chunks of `chunk`; resolves with where the upload stands. */
export async function upload(store: ArtifactStore, start: ArtifactStart, bytes: Uint8Array, from = 0, chunk = 64 * 1024): Promise<number> {
  let received = from;
  for (let offset = from; offset < bytes.length; offset += chunk) {
    ({ received } = await store.write(start.artifact_id, offset, bytes.subarray(offset, offset + chunk)));
  }
  return received;
}

/**
 * A sweep's rule: idle means last advanced before `idleBefore`; only `resumableJobs`' attempts
 * may resume. The attempts it was asked about are pushed to `asked`.
 */
export function sweepRule(idleBefore: number, resumableJobs: readonly string[] = [], asked: string[] = []): SweepRule {
  return {
    idleBefore,
    resumable: (jobId, attempt) => {
      asked.push(`${jobId}/${attempt}`);
      return Promise.resolve(resumableJobs.includes(jobId));
    },
  };
}

/** Well before (or after) every write of a test: file and server clocks are coarser than Date.now(). */
const A_MINUTE = 60_000;

async function rejected(work: Promise<unknown>, field: string): Promise<void> {
  const err = await work.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(MusterError);
  expect(err).toMatchObject({ code: 'artifact_rejected', field });
}

export function artifactStoreContract(name: string, open: () => Promise<ArtifactStore> | ArtifactStore, reopen?: (store: ArtifactStore) => Promise<ArtifactStore>): void {
  describe(`ArtifactStore contract: ${name}`, () => {
    let store: ArtifactStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => store.close());

    it('stores an upload in chunks, lists it, and reads it back whole and by range', async () => {
      const bytes = randomBytes(300_000);
      const start = artifactOf(bytes, { content_type: 'application/gzip' });
      expect(await store.start(start)).toEqual({ received: 0 });
      expect(await upload(store, start, bytes)).toBe(bytes.length);
      const record = await store.end(start.artifact_id);
      expect(record).toMatchObject({ artifact_id: start.artifact_id, job_id: start.job_id, attempt: 1, name: 'dist.tar.gz', size: bytes.length, sha256: start.sha256, content_type: 'application/gzip' });
      expect(await store.list(start.job_id)).toEqual([record]);
      const whole = await store.read(start.job_id, 'dist.tar.gz');
      expect(Buffer.compare(await buffer(whole!.body), bytes)).toBe(0);
      const part = await store.read(start.job_id, 'dist.tar.gz', { range: { start: 1000, end: 2000 } });
      expect(Buffer.compare(await buffer(part!.body), bytes.subarray(1000, 2000))).toBe(0);
      expect(await store.read(start.job_id, 'other')).toBeUndefined();
    });

    it('resumes an upload from what it has: a chunk not at `received` is dropped and answered with it', async () => {
      const bytes = randomBytes(200_000);
      const start = artifactOf(bytes);
      await store.start(start);
      expect(await upload(store, start, bytes.subarray(0, 100_000))).toBe(100_000);
      // A chunk from further on (its predecessor lost with the connection): nothing stored.
      expect(await store.write(start.artifact_id, 150_000, bytes.subarray(150_000, 160_000))).toEqual({ received: 100_000 });
      // The node starts again with the same id; the store says where it stands.
      expect(await store.start(start)).toEqual({ received: 100_000 });
      expect(await upload(store, start, bytes, 100_000)).toBe(bytes.length);
      expect((await store.end(start.artifact_id)).size).toBe(bytes.length);
    });

    if (reopen !== undefined) {
      it('keeps what it stored of an upload across a restart, and completes it after', async () => {
        const bytes = randomBytes(150_000);
        const start = artifactOf(bytes);
        await store.start(start);
        await upload(store, start, bytes.subarray(0, 70_000));
        store = await reopen(store);
        expect(await store.start(start)).toEqual({ received: 70_000 });
        await upload(store, start, bytes, 70_000);
        expect((await store.end(start.artifact_id)).sha256).toBe(start.sha256);
      });
    }

    it('sweeps an idle upload of an attempt that may not resume, and a later Start of it begins afresh', async () => {
      const bytes = randomBytes(120_000);
      const done = artifactOf(bytes.subarray(0, 5_000));
      await store.start(done);
      await upload(store, done, bytes.subarray(0, 5_000));
      const record = await store.end(done.artifact_id);
      const gone = artifactOf(bytes, { attempt: 2 });
      await store.start(gone);
      expect(await upload(store, gone, bytes.subarray(0, 70_000))).toBe(70_000);
      // Its job's current attempt: kept however idle (PROTOCOL.md section 8 lets it resume).
      const kept = artifactOf(bytes);
      await store.start(kept);
      expect(await upload(store, kept, bytes.subarray(0, 30_000))).toBe(30_000);

      // Advanced since the rule's moment: not idle, nothing removed whatever its attempt.
      expect(await store.sweep(sweepRule(Date.now() - A_MINUTE))).toBe(0);
      expect(await store.start(gone)).toEqual({ received: 70_000 });

      const asked: string[] = [];
      expect(await store.sweep(sweepRule(Date.now() + A_MINUTE, [kept.job_id], asked))).toBe(1);
      expect(asked.sort()).toEqual([`${gone.job_id}/2`, `${kept.job_id}/1`].sort());
      // Nothing left to remove; a completed artifact is never looked at.
      expect(await store.sweep(sweepRule(Date.now() + A_MINUTE, [kept.job_id]))).toBe(0);
      expect(await store.list(done.job_id)).toEqual([record]);
      expect(Buffer.compare(await buffer((await store.read(done.job_id, done.name))!.body), bytes.subarray(0, 5_000))).toBe(0);
      expect(await store.write(gone.artifact_id, 70_000, bytes.subarray(70_000, 80_000)).catch((e: unknown) => e)).toMatchObject({ code: 'artifact_rejected' });

      expect(await store.start(kept)).toEqual({ received: 30_000 });
      expect(await store.start(gone)).toEqual({ received: 0 });
      expect(await upload(store, gone, bytes)).toBe(bytes.length);
      expect((await store.end(gone.artifact_id)).sha256).toBe(gone.sha256);
    });

    if (reopen !== undefined) {
      it('sweeps an upload an earlier process began and left (its Start not repeated since)', async () => {
        const bytes = randomBytes(90_000);
        const left = artifactOf(bytes);
        await store.start(left);
        await upload(store, left, bytes.subarray(0, 40_000));
        store = await reopen(store);
        expect(await store.sweep(sweepRule(Date.now() + A_MINUTE))).toBe(1);
        expect(await store.start(left)).toEqual({ received: 0 });
      });
    }

    it('refuses bytes that do not match the digest, and drops them', async () => {
      const bytes = randomBytes(10_000);
      const start = artifactOf(bytes, { sha256: 'a'.repeat(64) });
      await store.start(start);
      await upload(store, start, bytes);
      await rejected(store.end(start.artifact_id), 'data.sha256');
      expect(await store.list(start.job_id)).toEqual([]);
      expect(await store.start(start)).toEqual({ received: 0 });
    });

    it('refuses an artifact that ends short, one over its size or over the limit, and bad ids', async () => {
      const bytes = randomBytes(10_000);
      const short = artifactOf(bytes);
      await store.start(short);
      await upload(store, short, bytes.subarray(0, 5_000));
      await rejected(store.end(short.artifact_id), 'data.size');
      const long = artifactOf(bytes.subarray(0, 100));
      await store.start(long);
      await rejected(store.write(long.artifact_id, 0, bytes), 'data.data');
      await rejected(store.start(artifactOf(bytes, { size: MAX_ARTIFACT_BYTES + 1 })), 'data.size');
      await rejected(store.start(artifactOf(bytes, { artifact_id: '../../etc/passwd' })), 'data.artifact_id');
      await rejected(store.write(randomUUID(), 0, bytes), 'data.artifact_id');
    });

    it('keeps names unique within an attempt, and serves the last attempt by name or another by number', async () => {
      const one = randomBytes(1_000);
      const two = randomBytes(2_000);
      const first = artifactOf(one);
      await store.start(first);
      await upload(store, first, one);
      await store.end(first.artifact_id);
      await rejected(store.start(artifactOf(two, { job_id: first.job_id })), 'data.name');
      const second = artifactOf(two, { job_id: first.job_id, attempt: 2 });
      await store.start(second);
      await upload(store, second, two);
      await store.end(second.artifact_id);
      expect((await store.list(first.job_id)).map((r) => r.attempt)).toEqual([1, 2]);
      expect((await store.read(first.job_id, first.name))!.record.attempt).toBe(2);
      expect(Buffer.compare(await buffer((await store.read(first.job_id, first.name, { attempt: 1 }))!.body), one)).toBe(0);
    });

    it('refuses a restart of an upload with another size or digest', async () => {
      const bytes = randomBytes(1_000);
      const start = artifactOf(bytes);
      await store.start(start);
      await rejected(store.start({ ...start, size: 999 }), 'data.artifact_id');
    });
  });
}
