// The agent's side of the `artifacts` wire feature (PROTOCOL.md section 8): each file a job's
// patterns matched is hashed, announced with ArtifactStart, sent in ArtifactChunks of at most
// 256 KiB with never more than `artifact_window_bytes` unacknowledged, and closed with ArtifactEnd;
// it is done when the plane acknowledges it `complete`, or rejects it. Across a reconnect an
// upload waits, then starts again with the same `artifact_id` and goes on from the `received`
// of the plane's Ack. An Ack that moves nothing while bytes are out (the plane dropped a chunk
// not at its place) rewinds to it, once per place: the chunks already in flight behind the
// dropped one are answered with that same place, and must not rewind again. An upload that hears
// nothing for `stallMs` while it waits for an Ack asks again with ArtifactStart.
// Files are read a chunk at a time: memory stays flat whatever their size.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ARTIFACT_CHUNK_MAX, type MessageData, type NodeMessageType, type ResultArtifact } from '../protocol/messages.js';
import type { ArtifactFile } from './artifact-files.js';

/** Where uploads send: the agent's registered link, when there is one. */
export interface UploadLink {
  send<T extends NodeMessageType>(type: T, data: MessageData<T>): string | undefined;
  readonly isClosed: boolean;
}

export interface ArtifactUploadsOptions {
  logger: Logger;
  /** True: chunks carry binary (MessagePack); false: base64 text (JSON). */
  binary: boolean;
  /** No Ack for this long while one is awaited: ArtifactStart again. Default 30 s. */
  stallMs?: number;
}

const DEFAULT_STALL_MS = 30_000;

interface Upload {
  id: string;
  jobId: string;
  attempt: number;
  file: ArtifactFile;
  path: string;
  sha256: string;
  /** Bytes the plane said it stored. */
  acked: number;
  /** Bytes sent on the current link. */
  sent: number;
  /** The place of the last rewind: Acks that repeat it are the plane answering chunks already in flight. */
  rewoundTo: number;
  state: 'waiting' | 'starting' | 'sending' | 'ending';
  link: UploadLink | undefined;
  handle: FileHandle | undefined;
  pumping: boolean;
  stall: NodeJS.Timeout | undefined;
  done(outcome: UploadOutcome): void;
}

type UploadOutcome = { complete: true } | { complete: false; reason: string };

export class ArtifactUploads {
  readonly #uploads = new Map<string, Upload>();
  /** Envelope ids of what each upload sent, so that an Error's `reply_to` finds its upload. */
  readonly #byMessage = new Map<string, Upload>();
  #link: UploadLink | undefined;
  /** Why uploads are given up at once (the session took no artifacts, the agent stops); cleared by the next link. */
  #refusal: string | undefined;
  #windowBytes = 4 * 1024 * 1024;

  constructor(private readonly o: ArtifactUploadsOptions) {}

  /** Uploads under way. */
  get active(): number {
    return this.#uploads.size;
  }

  /** A session turned `artifacts` on (with this window): every upload (re)starts on it. */
  linkUp(link: UploadLink, windowBytes: number): void {
    this.#link = link;
    this.#refusal = undefined;
    this.#windowBytes = windowBytes;
    for (const upload of this.#uploads.values()) this.begin(upload);
  }

  /** The connection is gone (or its session has no `artifacts`): uploads wait for the next. */
  linkDown(): void {
    this.#link = undefined;
    this.#refusal = undefined;
    for (const upload of this.#uploads.values()) {
      clearTimeout(upload.stall);
      upload.state = 'waiting';
      upload.link = undefined;
    }
  }

  /**
   * Uploads the files (paths relative to `cwd`) for the attempt, one after another; resolves with
   * those the plane stored, as `result.artifacts` lists them. Never rejects: a file that cannot be
   * read or that the plane refuses is logged and left out.
   */
  async uploadAll(jobId: string, attempt: number, cwd: string, files: readonly ArtifactFile[]): Promise<ResultArtifact[]> {
    const stored: ResultArtifact[] = [];
    for (const file of files) {
      const path = join(cwd, file.path);
      let facts: { sha256: string; size: number };
      try {
        facts = await digestOf(path);
      } catch (err) {
        this.o.logger.warn({ err, job_id: jobId, path: file.path }, 'artifact cannot be read; left out');
        continue;
      }
      // An upload the plane ended short (a chunk of it was lost) is tried again from the start, twice at most.
      for (let tries = 1; ; tries++) {
        const outcome = await this.uploadOne(jobId, attempt, path, { ...file, size: facts.size }, facts.sha256);
        if (outcome.complete) {
          stored.push({ artifact_id: outcome.id, name: file.name, size: facts.size, sha256: facts.sha256 });
          break;
        }
        const again = outcome.reason.includes('(data.size)') && tries < 3;
        this.o.logger.warn({ job_id: jobId, attempt, name: file.name, reason: outcome.reason, again }, 'artifact not stored');
        if (!again) break;
      }
    }
    return stored;
  }

  private uploadOne(jobId: string, attempt: number, path: string, file: ArtifactFile, sha256: string): Promise<{ id: string } & UploadOutcome> {
    return new Promise((resolve) => {
      if (this.#refusal !== undefined) return resolve({ id: '', complete: false, reason: this.#refusal });
      const upload: Upload = {
        id: randomUUID(),
        jobId,
        attempt,
        file,
        path,
        sha256,
        acked: 0,
        sent: 0,
        rewoundTo: -1,
        state: 'waiting',
        link: undefined,
        handle: undefined,
        pumping: false,
        stall: undefined,
        done: (outcome) => {
          this.finish(upload);
          resolve({ id: upload.id, ...outcome });
        },
      };
      this.#uploads.set(upload.id, upload);
      if (this.#link !== undefined) this.begin(upload);
    });
  }

  /** An `ArtifactAck` from the plane. */
  onAck(ack: MessageData<'ArtifactAck'>): void {
    const upload = this.#uploads.get(ack.artifact_id);
    if (upload === undefined || upload.link === undefined) return;
    this.armStall(upload);
    if (ack.complete) return upload.done({ complete: true });
    if (upload.state === 'starting') {
      // Where the plane stands: go on from there.
      upload.acked = ack.received;
      upload.sent = ack.received;
      upload.rewoundTo = ack.received;
      upload.state = 'sending';
    } else if (ack.received > upload.acked) {
      upload.acked = ack.received;
    } else if (ack.received === upload.acked && ack.received < upload.sent && ack.received !== upload.rewoundTo) {
      // A chunk was dropped: send again from where the plane is.
      upload.sent = ack.received;
      upload.rewoundTo = ack.received;
      upload.state = 'sending';
    }
    void this.pump(upload);
  }

  /** An `Error` from the plane; true when it answered one of the uploads' messages (which ends that upload). */
  onError(error: MessageData<'Error'>, replyTo: string | undefined): boolean {
    const upload = replyTo === undefined ? undefined : this.#byMessage.get(replyTo);
    if (upload === undefined || !this.#uploads.has(upload.id)) return false;
    upload.done({ complete: false, reason: `${error.code}${error.field === undefined ? '' : ` (${error.field})`}: ${error.message}` });
    return true;
  }

  /** Gives up every upload under way (the agent stops, or the plane takes no artifacts). */
  stop(reason: string): void {
    this.#link = undefined;
    this.#refusal = reason;
    for (const upload of [...this.#uploads.values()]) upload.done({ complete: false, reason });
  }

  private begin(upload: Upload): void {
    const link = this.#link;
    if (link === undefined || link.isClosed) return;
    upload.link = link;
    upload.state = 'starting';
    upload.sent = upload.acked;
    this.sent(upload, link.send('ArtifactStart', {
      job_id: upload.jobId,
      attempt: upload.attempt,
      artifact_id: upload.id,
      name: upload.file.name,
      size: upload.file.size,
      sha256: upload.sha256,
    }));
    this.armStall(upload);
  }

  /** Sends chunks while the window has room, then ArtifactEnd once every byte is out. */
  private async pump(upload: Upload): Promise<void> {
    if (upload.pumping) return;
    upload.pumping = true;
    try {
      const { size } = upload.file;
      while (upload.state === 'sending' && upload.link !== undefined && !upload.link.isClosed) {
        const link = upload.link;
        if (upload.sent >= size) {
          upload.state = 'ending';
          this.sent(upload, link.send('ArtifactEnd', { artifact_id: upload.id }));
          return;
        }
        const n = Math.min(ARTIFACT_CHUNK_MAX, size - upload.sent);
        if (upload.sent + n - upload.acked > this.#windowBytes) return;
        const offset = upload.sent;
        upload.handle ??= await open(upload.path, 'r');
        const buffer = Buffer.allocUnsafe(n);
        const { bytesRead } = await upload.handle.read(buffer, 0, n, offset);
        if (bytesRead !== n) {
          // The file changed under the upload: its digest cannot match any more.
          upload.done({ complete: false, reason: `file shrank while being uploaded (read ${bytesRead} of ${n} bytes at ${offset})` });
          return;
        }
        // A rewind or a new link meanwhile: this read is stale.
        if (upload.link !== link || upload.sent !== offset || upload.state !== 'sending') continue;
        this.sent(upload, link.send('ArtifactChunk', { artifact_id: upload.id, offset, data: this.o.binary ? buffer : buffer.toString('base64') }));
        upload.sent = offset + n;
      }
    } catch (err) {
      upload.done({ complete: false, reason: `cannot read the file: ${err instanceof Error ? err.message : String(err)}` });
    } finally {
      upload.pumping = false;
    }
  }

  private sent(upload: Upload, messageId: string | undefined): void {
    if (messageId !== undefined) this.#byMessage.set(messageId, upload);
  }

  /** While an Ack is awaited, silence for `stallMs` asks the plane again where the upload stands. */
  private armStall(upload: Upload): void {
    clearTimeout(upload.stall);
    upload.stall = setTimeout(() => {
      if (upload.link === undefined || !this.#uploads.has(upload.id)) return;
      this.o.logger.info({ artifact_id: upload.id, name: upload.file.name, acked: upload.acked, sent: upload.sent }, 'no artifact ack in time; asking again');
      this.begin(upload);
    }, this.o.stallMs ?? DEFAULT_STALL_MS);
    upload.stall.unref();
  }

  private finish(upload: Upload): void {
    clearTimeout(upload.stall);
    upload.state = 'waiting';
    upload.link = undefined;
    this.#uploads.delete(upload.id);
    for (const [id, u] of this.#byMessage) if (u === upload) this.#byMessage.delete(id);
    void upload.handle?.close().catch(() => undefined);
  }
}

/** The file's lowercase hex SHA-256 and its size, read as a stream. */
async function digestOf(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}
