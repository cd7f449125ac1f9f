// The embedded plane's artifacts, in the data directory:
//   artifacts/uploads/<artifact_id>.json   an upload under way (what ArtifactStart said)
//   artifacts/uploads/<artifact_id>.part   its bytes so far: `received` is this file's size
//   artifacts/jobs/<job_id>/<attempt>/<artifact_id>(.json)   completed artifacts and their records
// Bytes go straight from each chunk to the file and are hashed as they come, so memory stays
// flat whatever the size. An upload resumed after a restart re-reads its part file once to
// rebuild the digest. An upload's last advance is its part file's mtime (each chunk writes it;
// created by the Start); `sweep` reads `uploads/` only, so it costs a readdir and a stat per
// upload under way, never anything per completed artifact. Only ids the store checked (UUIDs) ever name a file: a node's `name` is
// kept in the record, never used as a path. A completed artifact is fsynced before `end` answers.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { checkStart, recordOf, reject, sameUpload, UUID } from './artifact-checks.js';
import type { ArtifactRecord, ArtifactStart, ArtifactStore, ByteRange, SweepRule } from './artifact-store.js';

export interface FileArtifactStoreOptions {
  /** The plane's data directory; artifacts live in its `artifacts/`. */
  dataDir: string;
  /** The largest artifact taken (`max_artifact_bytes`). */
  maxArtifactBytes: number;
}

/** An upload this process is writing: its file, digest so far, and the chain that orders its writes. */
interface LiveUpload {
  start: ArtifactStart;
  file: FileHandle;
  hash: Hash;
  /** Bytes accepted so far (written, or queued on `chain`). */
  accepted: number;
  chain: Promise<unknown>;
}

export class FileArtifactStore implements ArtifactStore {
  readonly #root: string;
  readonly #uploads: string;
  readonly #live = new Map<string, LiveUpload>();

  constructor(private readonly o: FileArtifactStoreOptions) {
    this.#root = join(o.dataDir, 'artifacts');
    this.#uploads = join(this.#root, 'uploads');
  }

  async start(start: ArtifactStart): Promise<{ received: number }> {
    checkStart(start, this.o.maxArtifactBytes);
    const live = this.#live.get(start.artifact_id);
    if (live !== undefined) {
      if (!sameUpload(live.start, start)) throw reject('data.artifact_id', `artifact ${start.artifact_id} was started with another name, size or digest`);
      await live.chain;
      return { received: live.accepted };
    }
    const known = await this.#readMeta(start.artifact_id);
    if (known !== undefined && !sameUpload(known, start)) throw reject('data.artifact_id', `artifact ${start.artifact_id} was started with another name, size or digest`);
    await this.#checkNameFree(start);
    await mkdir(this.#uploads, { recursive: true, mode: 0o700 });
    if (known === undefined) await writeFile(this.#metaPath(start.artifact_id), JSON.stringify(start), { mode: 0o600 });
    const upload = await this.#open(start);
    return { received: upload.accepted };
  }

  async write(artifactId: string, offset: number, data: Uint8Array): Promise<{ received: number }> {
    const upload = this.#live.get(artifactId);
    if (upload === undefined) throw reject('data.artifact_id', `no upload ${artifactId} under way: send ArtifactStart first`);
    if (offset !== upload.accepted) {
      await upload.chain;
      return { received: upload.accepted };
    }
    if (upload.accepted + data.length > upload.start.size) {
      await this.drop(artifactId);
      throw reject('data.data', `artifact ${artifactId} is larger than its size ${upload.start.size}`);
    }
    upload.accepted += data.length;
    const at = offset;
    // Chunks are written in the order they came; each waits for the one before.
    upload.chain = upload.chain.then(async () => {
      await upload.file.write(data, 0, data.length, at);
      upload.hash.update(data);
    });
    await upload.chain;
    return { received: upload.accepted };
  }

  async end(artifactId: string): Promise<ArtifactRecord> {
    const upload = this.#live.get(artifactId);
    if (upload === undefined) throw reject('data.artifact_id', `no upload ${artifactId} under way`);
    await upload.chain;
    const { start } = upload;
    if (upload.accepted !== start.size) {
      await this.drop(artifactId);
      throw reject('data.size', `artifact ${artifactId} ended after ${upload.accepted} of its ${start.size} bytes`);
    }
    const digest = upload.hash.digest('hex');
    if (digest !== start.sha256) {
      await this.drop(artifactId);
      throw reject('data.sha256', `artifact ${artifactId}: its bytes have sha256 ${digest}, not ${start.sha256}`);
    }
    await upload.file.datasync();
    await upload.file.close();
    this.#live.delete(artifactId);
    const dir = this.#attemptDir(start.job_id, start.attempt);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const record = recordOf(start, new Date());
    await rename(this.#partPath(artifactId), join(dir, artifactId));
    await writeFile(join(dir, `${artifactId}.json`), JSON.stringify(record), { mode: 0o600 });
    await rm(this.#metaPath(artifactId), { force: true });
    return record;
  }

  async drop(artifactId: string): Promise<void> {
    if (!UUID.test(artifactId)) return;
    const upload = this.#live.get(artifactId);
    this.#live.delete(artifactId);
    if (upload !== undefined) {
      await upload.chain.catch(() => undefined);
      await upload.file.close().catch(() => undefined);
    }
    await rm(this.#partPath(artifactId), { force: true });
    await rm(this.#metaPath(artifactId), { force: true });
  }

  async sweep(rule: SweepRule): Promise<number> {
    const files = await readdir(this.#uploads).catch(() => [] as string[]);
    const ids = new Set(files.map((f) => f.replace(/\.(json|part)$/, '')).filter((id) => UUID.test(id)));
    let removed = 0;
    for (const id of ids) {
      const advanced = await this.#lastAdvance(id);
      if (advanced === undefined || advanced >= rule.idleBefore) continue;
      const start = await this.#readMeta(id);
      // A part file without its Start (one cannot resume without it) is abandoned whatever its job.
      if (start !== undefined && (await rule.resumable(start.job_id, start.attempt))) continue;
      // Taken up again while the job was looked up (a Start or a chunk): not idle any more.
      const now = await this.#lastAdvance(id);
      if (now === undefined || now >= rule.idleBefore) continue;
      await this.drop(id);
      removed++;
    }
    return removed;
  }

  async list(jobId: string): Promise<ArtifactRecord[]> {
    if (!UUID.test(jobId)) return [];
    const jobDir = join(this.#root, 'jobs', jobId);
    const attempts = await readdir(jobDir).catch(() => [] as string[]);
    const records: ArtifactRecord[] = [];
    for (const attempt of attempts) {
      for (const file of await readdir(join(jobDir, attempt)).catch(() => [] as string[])) {
        if (file.endsWith('.json')) records.push(JSON.parse(await readFile(join(jobDir, attempt, file), 'utf8')) as ArtifactRecord);
      }
    }
    return records.sort((a, b) => a.attempt - b.attempt || a.stored_at.localeCompare(b.stored_at));
  }

  async read(jobId: string, name: string, options: { attempt?: number; range?: ByteRange } = {}): Promise<{ record: ArtifactRecord; body: ReturnType<typeof createReadStream> } | undefined> {
    const named = (await this.list(jobId)).filter((r) => r.name === name && (options.attempt === undefined || r.attempt === options.attempt));
    const record = named.at(-1);
    if (record === undefined) return undefined;
    const range = options.range ?? { start: 0, end: record.size };
    const path = join(this.#attemptDir(jobId, record.attempt), record.artifact_id);
    // createReadStream's `end` is inclusive; an empty range reads nothing.
    const body = createReadStream(path, range.end > range.start ? { start: range.start, end: range.end - 1 } : { start: 0, end: -1 });
    return { record, body };
  }

  async close(): Promise<void> {
    for (const upload of this.#live.values()) {
      await upload.chain.catch(() => undefined);
      await upload.file.close().catch(() => undefined);
    }
    this.#live.clear();
  }

  /** Opens (or creates) the upload's part file; a file from before a restart is hashed again first. */
  async #open(start: ArtifactStart): Promise<LiveUpload> {
    const path = this.#partPath(start.artifact_id);
    const file = await open(path, 'a+', 0o600);
    const hash = createHash('sha256');
    const { size } = await stat(path);
    const received = Math.min(size, start.size);
    if (received > 0) {
      await pipeline(
        createReadStream(path, { start: 0, end: received - 1 }),
        new Writable({
          write(chunk: Buffer, _encoding, done) {
            hash.update(chunk);
            done();
          },
        }),
      );
    }
    if (size > received) await file.truncate(received);
    // 'a+' appends on Linux whatever the position: reopen for positional writes.
    await file.close();
    const upload: LiveUpload = { start, file: await open(path, 'r+'), hash, accepted: received, chain: Promise.resolve() };
    this.#live.set(start.artifact_id, upload);
    return upload;
  }

  /** Names are unique within an attempt: another upload (live or completed) of that name is refused. */
  async #checkNameFree(start: ArtifactStart): Promise<void> {
    const completed = (await this.list(start.job_id)).some((r) => r.attempt === start.attempt && r.name === start.name && r.artifact_id !== start.artifact_id);
    const uploading = [...this.#live.values()].some(
      (u) => u.start.job_id === start.job_id && u.start.attempt === start.attempt && u.start.name === start.name && u.start.artifact_id !== start.artifact_id,
    );
    if (completed || uploading) throw reject('data.name', `attempt ${start.attempt} of job ${start.job_id} already has an artifact named ${start.name}`);
  }

  /** When the upload last advanced (its part file's mtime, else its Start's); undefined when it is gone. */
  async #lastAdvance(artifactId: string): Promise<number | undefined> {
    for (const path of [this.#partPath(artifactId), this.#metaPath(artifactId)]) {
      const found = await stat(path).catch(() => undefined);
      if (found !== undefined) return found.mtimeMs;
    }
    return undefined;
  }

  async #readMeta(artifactId: string): Promise<ArtifactStart | undefined> {
    try {
      return JSON.parse(await readFile(this.#metaPath(artifactId), 'utf8')) as ArtifactStart;
    } catch {
      return undefined;
    }
  }

  #metaPath(artifactId: string): string {
    return join(this.#uploads, `${artifactId}.json`);
  }

  #partPath(artifactId: string): string {
    return join(this.#uploads, `${artifactId}.part`);
  }

  #attemptDir(jobId: string, attempt: number): string {
    return join(this.#root, 'jobs', jobId, String(attempt));
  }
}
