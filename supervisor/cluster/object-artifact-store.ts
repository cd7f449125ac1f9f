// A cluster's artifacts, in NATS, so that any replica takes up an upload another began and
// serves what another stored (PROTOCOL.md section 8; the ArtifactStore seam):
//   object store `muster-artifacts` (stream OBJ_muster-artifacts, @nats-io/obj)
//     `$O.<bucket>.C.<nuid>`  an upload's bytes, one message per ArtifactChunk (artifact-chunks.ts)
//     `$O.<bucket>.M.<name>`  a completed artifact's object meta, written once its sha256 matched;
//                             named `<job_id>/<attempt>/<artifact_id>`, readable with any object
//                             store client (`nats object get`, @nats-io/obj's `get`)
//   KV bucket `muster-artifacts`, key `<job_id>.<attempt>.<artifact_id>`: the upload
//     (`uploading`: what ArtifactStart said, and its chunk subject) and then its record (`stored`),
//     or `abandoned` for the moment a sweep removes it (below)
// Why chunks straight into the object store's stream rather than a stream of uploads copied into
// the object store at the end: @nats-io/obj's `put` writes an object from one stream in one go
// (a cut connection purges what it wrote), so it cannot be resumed, and copying at the end would
// write every byte twice and make `ArtifactEnd` wait for the copy. Written as the object store
// lays an object out, each byte is written once, the upload's state is the stream itself (its
// last chunk says `received`; the append is a compare-and-set on it, so no replica's memory is
// trusted over NATS), and completing it is one meta message. A fresh nuid per upload (a dropped
// one starts again on a new subject) keeps a dropped upload's chunks from ever counting again.
// The digest so far lives in the replica that takes the chunks; a replica that resumes an upload
// it did not see reads the chunks once to rebuild it. Downloads read chunk by chunk, so memory
// stays flat whatever the size, and a Range starts at its chunk (artifact-chunks.ts).
// Abandoned uploads (`sweep`, run by every replica): an upload is idle when neither its entry nor
// its last chunk was written since the rule's moment (the server's timestamps). Each replica
// follows the bucket from the last stream sequence it read (kv-changes.ts), keeping the uploads
// under way in memory, so a sweep costs the KV messages written since the last one plus a get
// of the last chunk of each upload whose entry is idle, not a read of every stored record (the
// first sweep after the replica starts reads the bucket once). Removal is safe with any number
// of sweepers and against a Start or an End elsewhere: the sweeper first turns the entry
// `abandoned` by compare-and-set on the revision it read (whoever wrote the entry since wins, and
// the sweeper leaves it), and only then purges the chunks, then the entry itself, again by
// compare-and-set. A sweeper that dies between leaves an `abandoned` entry, which the next sweep
// anywhere finishes without waiting, and which a Start replaces with a fresh upload. A chunk does
// not change the entry: one stored between the sweeper's look and its purge goes with the rest
// (its End is then refused as short), which can only be a chunk of an attempt the job store says
// cannot resume, one the intake refuses anyway.
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { headers, type NatsConnection } from '@nats-io/nats-core';
import { Base64UrlPaddedCodec, Objm, type ObjectStore } from '@nats-io/obj';
import { ARTIFACT_CHUNK_MAX } from '../../protocol/messages.js';
import { checkStart, recordOf, reject, sameUpload, UUID } from '../artifacts/artifact-checks.js';
import type { ArtifactRecord, ArtifactStart, ArtifactStore, ByteRange, SweepRule } from '../artifacts/artifact-store.js';
import { ArtifactChunks, NO_CHUNKS, type ChunkTail } from './artifact-chunks.js';
import { kvChanges } from './kv-changes.js';
import { isWrongLast } from './jetstream-errors.js';
import { createOnce, liveValue, updateAt } from './kv-cas.js';
import { readKvEntries } from './stream-read.js';

export const ARTIFACTS_BUCKET = 'muster-artifacts';

export interface ObjectArtifactStoreOptions {
  nc: NatsConnection;
  /** The largest artifact taken (`max_artifact_bytes`). */
  maxArtifactBytes: number;
  /** Copies of the object store and the KV bucket; default 1. */
  replicas?: number;
  /** Default `muster-artifacts` (both buckets). */
  bucket?: string;
  /** JetStream request timeout; default 2000 ms. */
  timeoutMs?: number;
}

/**
 * A KV entry: an upload under way, a completed artifact, or an upload a sweep is removing (its
 * chunks may still be there). `nuid` names its chunk subject.
 */
type Entry =
  | { state: 'uploading'; start: ArtifactStart; nuid: string }
  | { state: 'stored'; record: ArtifactRecord; nuid: string }
  | { state: 'abandoned'; start: ArtifactStart; nuid: string };

/** An entry that is not (yet) a completed artifact, as a sweep follows it: `at` is when it was written. */
interface Unfinished {
  entry: Exclude<Entry, { state: 'stored' }>;
  revision: number;
  at: number;
}

/** An upload this replica takes chunks of now. */
interface LiveUpload {
  start: ArtifactStart;
  key: string;
  /** The KV entry's revision (the `stored` update is a compare-and-set on it). */
  revision: number;
  nuid: string;
  subject: string;
  tail: ChunkTail;
  /** SHA-256 of the bytes up to `tail`. */
  hash: Hash;
}

/** A KV entry's largest value: an ArtifactStart (a name of up to 4096 characters) and a little more. */
const MAX_ENTRY_BYTES = 64 * 1024;

export class ObjectArtifactStore implements ArtifactStore {
  readonly #live = new Map<string, LiveUpload>();
  /** Uploads under way (or being removed) by key, as of KV stream sequence `#followedTo` (`sweep`). */
  readonly #unfinished = new Map<string, Unfinished>();
  #followedTo = 0;
  /** One sweep at a time in this process: a second call waits for it and sweeps after. */
  #sweeping: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly objects: ObjectStore,
    private readonly chunks: ArtifactChunks,
    private readonly bucket: string,
    private readonly maxArtifactBytes: number,
  ) {}

  static async open(o: ObjectArtifactStoreOptions): Promise<ObjectArtifactStore> {
    const timeout = o.timeoutMs ?? 2_000;
    const bucket = o.bucket ?? ARTIFACTS_BUCKET;
    const replicas = o.replicas ?? 1;
    const js = jetstream(o.nc, { timeout });
    const jsm = await jetstreamManager(o.nc, { timeout });
    const objects = await new Objm(js).create(bucket, { storage: StorageType.File, replicas });
    const kv = await new Kvm(js).create(bucket, { history: 1, replicas, storage: StorageType.File, maxValueSize: MAX_ENTRY_BYTES, timeout });
    const stream = (await objects.status()).streamInfo.config.name;
    return new ObjectArtifactStore(js, jsm, kv, objects, new ArtifactChunks(js, jsm, stream), bucket, o.maxArtifactBytes);
  }

  async start(start: ArtifactStart): Promise<{ received: number }> {
    checkStart(start, this.maxArtifactBytes);
    const live = this.#live.get(start.artifact_id);
    if (live !== undefined && !sameUpload(live.start, start)) throw startedOtherwise(start);
    const key = keyOf(start);
    for (let race = 0; race < 3; race++) {
      const found = await this.kv.get(key);
      const entry = liveValue(found) as Entry | undefined;
      if (entry?.state === 'stored') throw reject('data.artifact_id', `artifact ${start.artifact_id} is stored already`);
      if (entry?.state === 'abandoned' && found !== null) {
        // Swept as abandoned: it begins afresh, on a new subject, in place of the sweep's entry.
        const fresh = await this.#begin(start, key, found.revision);
        if (fresh === undefined) continue;
        await this.chunks.purge(this.#chunkSubject(entry.nuid));
        return fresh;
      }
      if (entry !== undefined && found !== null) {
        if (!sameUpload(entry.start, start)) throw startedOtherwise(start);
        return { received: (await this.#resume(key, found.revision, entry.nuid, start, live)).tail.received };
      }
      const fresh = await this.#begin(start, key);
      // Another replica created it meanwhile: take it up as a resume.
      if (fresh === undefined) continue;
      return fresh;
    }
    throw new Error(`the upload entry of artifact ${start.artifact_id} kept changing while it was started`);
  }

  async write(artifactId: string, offset: number, data: Uint8Array): Promise<{ received: number }> {
    const upload = this.#live.get(artifactId);
    if (upload === undefined) throw reject('data.artifact_id', `no upload ${artifactId} under way: send ArtifactStart first`);
    if (offset !== upload.tail.received) return { received: upload.tail.received };
    if (upload.tail.received + data.length > upload.start.size) {
      await this.drop(artifactId);
      throw reject('data.data', `artifact ${artifactId} is larger than its size ${upload.start.size}`);
    }
    const next = await this.chunks.append(upload.subject, upload.tail, data).catch((err: unknown) => {
      // Whether it was stored is unknown: the next Start reads where it stands in NATS.
      this.#live.delete(artifactId);
      throw err;
    });
    if (next === undefined) {
      // The subject moved on without this replica: NATS says where the upload stands.
      await this.#sync(upload);
    } else {
      upload.hash.update(data);
      upload.tail = next;
    }
    return { received: upload.tail.received };
  }

  async end(artifactId: string): Promise<ArtifactRecord> {
    const upload = this.#live.get(artifactId);
    if (upload === undefined) throw reject('data.artifact_id', `no upload ${artifactId} under way`);
    await this.#sync(upload);
    const { start } = upload;
    if (upload.tail.received !== start.size) {
      await this.drop(artifactId);
      throw reject('data.size', `artifact ${artifactId} ended after ${upload.tail.received} of its ${start.size} bytes`);
    }
    const digest = upload.hash.digest();
    if (digest.toString('hex') !== start.sha256) {
      await this.drop(artifactId);
      throw reject('data.sha256', `artifact ${artifactId}: its bytes have sha256 ${digest.toString('hex')}, not ${start.sha256}`);
    }
    const record = recordOf(start, new Date());
    await this.#publishMeta(upload, record, digest);
    try {
      await this.kv.update(upload.key, JSON.stringify({ state: 'stored', record, nuid: upload.nuid } satisfies Entry), upload.revision);
    } catch (err) {
      if (!isWrongLast(err)) throw err;
      // Completed meanwhile by another replica (the same bytes: the digest matched there too).
      const now = liveValue(await this.kv.get(upload.key)) as Entry | undefined;
      if (now?.state !== 'stored' || now.nuid !== upload.nuid) throw err;
      this.#live.delete(artifactId);
      return now.record;
    }
    this.#live.delete(artifactId);
    return record;
  }

  async drop(artifactId: string): Promise<void> {
    if (!UUID.test(artifactId)) return;
    this.#live.delete(artifactId);
    // Whichever replica began it: the entry is found by its artifact id.
    for (const { key, value } of await readKvEntries<Entry>(this.js, this.jsm, this.bucket, `*.*.${artifactId}`)) {
      if (value.state === 'stored') continue;
      await this.chunks.purge(this.#chunkSubject(value.nuid));
      await this.kv.purge(key);
    }
  }

  sweep(rule: SweepRule): Promise<number> {
    const run = this.#sweeping.then(() => this.#sweep(rule));
    this.#sweeping = run.catch(() => undefined);
    return run;
  }

  async list(jobId: string): Promise<ArtifactRecord[]> {
    return (await this.#stored(jobId)).map((s) => s.record);
  }

  async read(jobId: string, name: string, options: { attempt?: number; range?: ByteRange } = {}): Promise<{ record: ArtifactRecord; body: Readable } | undefined> {
    const named = (await this.#stored(jobId)).filter((s) => s.record.name === name && (options.attempt === undefined || s.record.attempt === options.attempt));
    const found = named.at(-1);
    if (found === undefined) return undefined;
    const range = options.range ?? { start: 0, end: found.record.size };
    // A chunk or so buffered ahead of the reader, never the artifact.
    const body = Readable.from(this.chunks.read(this.#chunkSubject(found.nuid), range), { objectMode: false, highWaterMark: 2 * ARTIFACT_CHUNK_MAX });
    return { record: found.record, body };
  }

  close(): Promise<void> {
    this.#live.clear();
    return Promise.resolve();
  }

  /**
   * A new upload's entry, created (or put in place of the abandoned entry at `replacing`) by
   * compare-and-set: undefined when another writer was first.
   */
  async #begin(start: ArtifactStart, key: string, replacing?: number): Promise<{ received: number } | undefined> {
    await this.#checkNameFree(start);
    const nuid = randomUUID().replaceAll('-', '');
    const value = JSON.stringify({ state: 'uploading', start, nuid } satisfies Entry);
    const revision = replacing === undefined ? await createOnce(this.kv, key, value) : await updateAt(this.kv, key, value, replacing);
    if (revision === undefined) return undefined;
    this.#live.set(start.artifact_id, { start, key, revision, nuid, subject: this.#chunkSubject(nuid), tail: NO_CHUNKS, hash: createHash('sha256') });
    return { received: 0 };
  }

  async #sweep(rule: SweepRule): Promise<number> {
    await this.#follow();
    let removed = 0;
    for (const [key, { entry, revision, at }] of [...this.#unfinished]) {
      if (entry.state === 'abandoned') {
        // A sweep (here or elsewhere) won it and may have stopped half-way: finished now.
        await this.#remove(key, entry, revision);
        continue;
      }
      // The entry is written at the Start; the chunks after it say when it last advanced.
      if (at >= rule.idleBefore) continue;
      const last = await this.chunks.lastWritten(this.#chunkSubject(entry.nuid));
      if (last !== undefined && last >= rule.idleBefore) continue;
      if (await rule.resumable(entry.start.job_id, entry.start.attempt)) continue;
      const abandoned: Entry = { state: 'abandoned', start: entry.start, nuid: entry.nuid };
      const won = await updateAt(this.kv, key, JSON.stringify(abandoned), revision);
      // Written since it was read (another sweeper, a Start, its End): that writer's, not this sweep's.
      if (won === undefined) continue;
      await this.#remove(key, abandoned, won);
      removed++;
    }
    return removed;
  }

  /** Brings `#unfinished` up to what the bucket holds now: only what was written since the last look is read. */
  async #follow(): Promise<void> {
    for await (const change of kvChanges(this.js, this.jsm, this.bucket, this.#followedTo)) {
      this.#followedTo = Math.max(this.#followedTo, change.seq);
      const entry = change.op === 'PUT' ? parseEntry(change.value) : undefined;
      if (entry === undefined || entry.state === 'stored') this.#unfinished.delete(change.key);
      else this.#unfinished.set(change.key, { entry, revision: change.seq, at: change.at });
    }
  }

  /**
   * Removes an upload whose entry this sweep (or an earlier one) turned `abandoned` at `revision`:
   * its chunks, then the entry, unless a Start replaced it meanwhile (that Start purges them too).
   */
  async #remove(key: string, entry: Extract<Entry, { state: 'abandoned' }>, revision: number): Promise<void> {
    this.#live.delete(entry.start.artifact_id);
    await this.chunks.purge(this.#chunkSubject(entry.nuid));
    try {
      await this.kv.purge(key, { previousSeq: revision });
    } catch (err) {
      if (!isWrongLast(err)) throw err;
    }
    this.#unfinished.delete(key);
  }

  /** A known upload, taken up here: from this replica's digest when NATS still agrees with it, else read again. */
  async #resume(key: string, revision: number, nuid: string, start: ArtifactStart, live: LiveUpload | undefined): Promise<LiveUpload> {
    const upload: LiveUpload = live !== undefined && live.nuid === nuid ? { ...live, revision } : { start, key, revision, nuid, subject: this.#chunkSubject(nuid), tail: NO_CHUNKS, hash: createHash('sha256') };
    await this.#sync(upload);
    this.#live.set(start.artifact_id, upload);
    return upload;
  }

  /** Brings `upload` to where its chunks stand in NATS: unchanged when its last chunk is the one this replica wrote. */
  async #sync(upload: LiveUpload): Promise<void> {
    const tail = await this.chunks.tail(upload.subject);
    if (tail.seq === upload.tail.seq) return;
    upload.hash = await this.chunks.digestUpTo(upload.subject, tail);
    upload.tail = tail;
  }

  /**
   * The object meta that makes the chunks an object of the store (ADR-20, as @nats-io/obj's `put`
   * writes it), once: a compare-and-set on an empty meta subject, so a second completion of the
   * same upload finds the first one's meta and leaves it.
   */
  async #publishMeta(upload: LiveUpload, record: ArtifactRecord, digest: Buffer): Promise<void> {
    const name = objectName(record);
    const meta = {
      name,
      description: record.name,
      bucket: this.bucket,
      nuid: upload.nuid,
      size: upload.tail.received,
      chunks: upload.tail.chunks,
      mtime: record.stored_at,
      digest: `SHA-256=${Base64UrlPaddedCodec.encode(digest)}`,
      deleted: false,
      options: { max_chunk_size: ARTIFACT_CHUNK_MAX },
      metadata: { job_id: record.job_id, attempt: String(record.attempt), artifact_id: record.artifact_id, sha256: record.sha256 },
    };
    const h = headers();
    h.set('Nats-Rollup', 'sub');
    try {
      await this.js.publish(`$O.${this.bucket}.M.${Base64UrlPaddedCodec.encode(name)}`, JSON.stringify(meta), { headers: h, expect: { lastSubjectSequence: 0 } });
    } catch (err) {
      if (!isWrongLast(err) || (await this.objects.info(name))?.nuid !== upload.nuid) throw err;
    }
  }

  /** The job's completed artifacts with their chunk subjects, every attempt, oldest first. */
  async #stored(jobId: string): Promise<Array<{ record: ArtifactRecord; nuid: string }>> {
    if (!UUID.test(jobId)) return [];
    const stored: Array<{ record: ArtifactRecord; nuid: string }> = [];
    for (const { value } of await readKvEntries<Entry>(this.js, this.jsm, this.bucket, `${jobId}.>`)) {
      if (value.state === 'stored') stored.push({ record: value.record, nuid: value.nuid });
    }
    return stored.sort((a, b) => a.record.attempt - b.record.attempt || a.record.stored_at.localeCompare(b.record.stored_at));
  }

  /** Names are unique within an attempt: another upload (under way or completed) of that name is refused. */
  async #checkNameFree(start: ArtifactStart): Promise<void> {
    const entries = await readKvEntries<Entry>(this.js, this.jsm, this.bucket, `${start.job_id}.${start.attempt}.*`);
    const taken = entries.some(({ value }) => {
      if (value.state === 'abandoned') return false;
      const other = value.state === 'stored' ? value.record : value.start;
      return other.name === start.name && other.artifact_id !== start.artifact_id;
    });
    if (taken) throw reject('data.name', `attempt ${start.attempt} of job ${start.job_id} already has an artifact named ${start.name}`);
  }

  #chunkSubject(nuid: string): string {
    return `$O.${this.bucket}.C.${nuid}`;
  }
}

function keyOf(start: ArtifactStart): string {
  return `${start.job_id}.${start.attempt}.${start.artifact_id}`;
}

function objectName(record: ArtifactRecord): string {
  return `${record.job_id}/${record.attempt}/${record.artifact_id}`;
}

/** A KV value as an Entry; undefined when it is none (not JSON, or no state this store knows). */
function parseEntry(value: Uint8Array): Entry | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(value).toString('utf8')) as Partial<Entry> | null;
    return parsed?.state === 'uploading' || parsed?.state === 'stored' || parsed?.state === 'abandoned' ? (parsed as Entry) : undefined;
  } catch {
    return undefined;
  }
}

function startedOtherwise(start: ArtifactStart): Error {
  return reject('data.artifact_id', `artifact ${start.artifact_id} was started with another name, size or digest`);
}
