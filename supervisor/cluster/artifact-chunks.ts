// The bytes of one artifact upload in the object store's stream: messages on the chunk subject
// `$O.<bucket>.C.<nuid>` (ADR-20, the layout @nats-io/obj reads), one per ArtifactChunk, each
// with headers `Muster-Artifact-Offset` (where its bytes start in the file) and
// `Muster-Artifact-Chunks` (how many chunks the upload has with it). An append is
// published with `Nats-Expected-Last-Subject-Sequence` set to the subject's last chunk, so it is
// a compare-and-set: a chunk is stored only right after its predecessor, whichever replica (or
// retry) writes it, and `received` (the last chunk's offset plus its length) is exact in NATS,
// not in one replica's memory. Reads go chunk by chunk (a direct get for the next one on the
// subject), so a reader holds one chunk at a time whatever the artifact's size.
import { createHash, type Hash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager, StoredMsg } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import type { ByteRange } from '../artifacts/artifact-store.js';
import { isWrongLast } from './jetstream-errors.js';

const OFFSET_HEADER = 'Muster-Artifact-Offset';
const COUNT_HEADER = 'Muster-Artifact-Chunks';

/** Where an upload stands in NATS: bytes stored, chunks, and the stream sequence of its last chunk (0: none). */
export interface ChunkTail {
  received: number;
  chunks: number;
  seq: number;
}

export const NO_CHUNKS: ChunkTail = { received: 0, chunks: 0, seq: 0 };

export class ArtifactChunks {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    /** The object store's stream (`OBJ_<bucket>`). */
    private readonly stream: string,
  ) {}

  /** The upload's last chunk, read from the stream's leader (what a compare-and-set compares with). */
  async tail(subject: string): Promise<ChunkTail> {
    const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
    return last === null ? NO_CHUNKS : { received: offsetOf(last) + last.data.length, chunks: Number(last.header.get(COUNT_HEADER)), seq: last.seq };
  }

  /**
   * Appends `data` after `tail`: the new tail, or undefined when the subject moved on since `tail`
   * (another writer, or an earlier try of this one that was stored though its answer was lost).
   */
  async append(subject: string, tail: ChunkTail, data: Uint8Array): Promise<ChunkTail | undefined> {
    const h = headers();
    h.set(OFFSET_HEADER, String(tail.received));
    h.set(COUNT_HEADER, String(tail.chunks + 1));
    try {
      const ack = await this.js.publish(subject, data, { headers: h, expect: { lastSubjectSequence: tail.seq } });
      return { received: tail.received + data.length, chunks: tail.chunks + 1, seq: ack.seq };
    } catch (err) {
      if (isWrongLast(err)) return undefined;
      throw err;
    }
  }

  /** The SHA-256 of every chunk up to `tail`, read again (an upload resumed where its digest so far is not in memory). */
  async digestUpTo(subject: string, tail: ChunkTail): Promise<Hash> {
    const hash = createHash('sha256');
    if (tail.seq === 0) return hash;
    for await (const chunk of this.chunks(subject, 0, tail.seq)) hash.update(chunk.data);
    return hash;
  }

  /** The bytes of `range`, a chunk at a time. */
  async *read(subject: string, range: ByteRange): AsyncGenerator<Uint8Array> {
    if (range.end <= range.start) return;
    const first = await this.chunkAt(subject, range.start);
    for await (const chunk of this.chunks(subject, first)) {
      const from = Math.max(0, range.start - chunk.offset);
      const to = Math.min(chunk.data.length, range.end - chunk.offset);
      if (to > from) yield chunk.data.subarray(from, to);
      if (chunk.offset + chunk.data.length >= range.end) return;
    }
  }

  /** Removes the upload's chunks. */
  async purge(subject: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: subject });
  }

  /** The subject's chunks in order from stream sequence `fromSeq`, up to `untilSeq` when given. */
  private async *chunks(subject: string, fromSeq: number, untilSeq = Number.MAX_SAFE_INTEGER): AsyncGenerator<{ offset: number; data: Uint8Array; seq: number }> {
    for (let seq = fromSeq; seq <= untilSeq; ) {
      const m = await this.jsm.direct.getMessage(this.stream, { seq, next_by_subj: subject });
      if (m === null || m.seq > untilSeq) {
        if (untilSeq !== Number.MAX_SAFE_INTEGER) throw new Error(`artifact chunks on ${subject} end before sequence ${untilSeq}`);
        return;
      }
      yield { offset: offsetOf(m), data: m.data, seq: m.seq };
      seq = m.seq + 1;
    }
  }

  /**
   * The stream sequence of the chunk that holds byte `offset`: a binary search over the subject's
   * sequences (offsets rise with them), a few gets instead of reading every chunk before it.
   */
  private async chunkAt(subject: string, offset: number): Promise<number> {
    let lo = 0;
    let hi = (await this.tail(subject)).seq;
    let found = 0;
    while (lo <= hi) {
      const m = await this.jsm.direct.getMessage(this.stream, { seq: Math.floor((lo + hi) / 2), next_by_subj: subject });
      if (m === null || m.seq > hi) {
        hi = Math.floor((lo + hi) / 2) - 1;
        continue;
      }
      if (offsetOf(m) <= offset) {
        found = m.seq;
        lo = m.seq + 1;
      } else {
        hi = Math.floor((lo + hi) / 2) - 1;
      }
    }
    return found;
  }
}

function offsetOf(m: StoredMsg): number {
  return Number(m.header.get(OFFSET_HEADER));
}
