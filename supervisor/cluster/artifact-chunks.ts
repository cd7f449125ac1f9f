// The bytes of one artifact upload in the object store's stream: messages on the chunk subject
// `$O.<bucket>.C.<nuid>` (ADR-20, the layout @nats-io/obj reads), one per ArtifactChunk, each with
// headers `Muster-Artifact-Offset` (where its bytes start in the file) and
// `Muster-Artifact-Chunks` (how many chunks the upload has with it). An append is published with
// `Nats-Expected-Last-Subject-Sequence` set to the subject's last chunk, so it is a
// compare-and-set: a chunk is stored only right after its predecessor, whichever replica (or
// retry) writes it, and `received` (the last chunk's offset plus its length) is exact in NATS, not
// in one replica's memory. No `Nats-Msg-Id` as the log chunks have: the compare-and-set alone
// stores a chunk once (a retry of a stored one finds the subject moved on and reads the tail), and
// each upload has a subject of its own. Reads go through an ephemeral consumer on the subject,
// fetched a few chunks at a time, so a reader holds a few chunks whatever the artifact's size; a
// Range starts at its chunk, found by a binary search of single gets. Nothing here uses direct
// gets: with replicas one may be answered by a follower that lags, which would end an artifact
// early or miss an upload's last chunks; the stream's leader answers gets and serves consumers.
import { createHash, type Hash } from 'node:crypto';
import type { JetStreamClient, JetStreamManager, MsgRequest, StoredMsg } from '@nats-io/jetstream';
import { headers, type MsgHdrs } from '@nats-io/nats-core';
import type { ByteRange } from '../artifacts/artifact-store.js';
import { isWrongLast } from './jetstream-errors.js';
import { streamMessages } from './stream-read.js';

const OFFSET_HEADER = 'Muster-Artifact-Offset';
const COUNT_HEADER = 'Muster-Artifact-Chunks';
/** Chunks a read fetches at once: what it holds at most (256 KiB each), and round trips saved. */
const FETCH_CHUNKS = 4;

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
    return last === null ? NO_CHUNKS : { received: offsetOf(last.header) + last.data.length, chunks: Number(last.header.get(COUNT_HEADER)), seq: last.seq };
  }

  /** When the upload's last chunk was stored (the server's clock, ms since the epoch); undefined when it has none. */
  async lastWritten(subject: string): Promise<number | undefined> {
    const last = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
    return last === null ? undefined : last.time.getTime();
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

  /** The bytes of `range`, a chunk at a time; fails (rather than end short) when the chunks do. */
  async *read(subject: string, range: ByteRange): AsyncGenerator<Uint8Array> {
    if (range.end <= range.start) return;
    const first = await this.chunkAt(subject, range.start);
    for await (const chunk of this.chunks(subject, first)) {
      const from = Math.max(0, range.start - chunk.offset);
      const to = Math.min(chunk.data.length, range.end - chunk.offset);
      if (to > from) yield chunk.data.subarray(from, to);
      if (chunk.offset + chunk.data.length >= range.end) return;
    }
    throw new Error(`artifact chunks on ${subject} end before byte ${range.end}`);
  }

  /** Removes the upload's chunks (idempotent: a second purge finds none). */
  async purge(subject: string): Promise<void> {
    await this.jsm.streams.purge(this.stream, { filter: subject });
  }

  /** The subject's chunks in order from stream sequence `fromSeq`, up to `untilSeq` (which must be there) when given. */
  private async *chunks(subject: string, fromSeq: number, untilSeq?: number): AsyncGenerator<{ offset: number; data: Uint8Array; seq: number }> {
    for await (const m of streamMessages(this.js, this.jsm, this.stream, subject, { afterSeq: Math.max(0, fromSeq - 1), batch: FETCH_CHUNKS })) {
      if (untilSeq !== undefined && m.seq > untilSeq) throw new Error(`artifact chunks on ${subject} have no sequence ${untilSeq}`);
      yield { offset: offsetOf(m.headers), data: m.data, seq: m.seq };
      if (m.seq === untilSeq) return;
    }
    if (untilSeq !== undefined) throw new Error(`artifact chunks on ${subject} end before sequence ${untilSeq}`);
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
      const mid = Math.floor((lo + hi) / 2);
      // The first chunk at or after `mid`: at or before `offset`, the answer is there or later; else before `mid`.
      const m = await this.next(subject, mid);
      if (m !== null && m.seq <= hi && offsetOf(m.header) <= offset) {
        found = m.seq;
        lo = m.seq + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  /**
   * The subject's first message at or after stream sequence `seq`, from the leader. nats-server
   * takes `next_by_subj` in a stream's MSG.GET since 2.9 (as in a direct get); nats.js 3.3.1
   * types it for direct gets only.
   */
  private next(subject: string, seq: number): Promise<StoredMsg | null> {
    return this.jsm.streams.getMessage(this.stream, { seq, next_by_subj: subject } as MsgRequest);
  }
}

function offsetOf(h: MsgHdrs | undefined): number {
  return Number(h?.get(OFFSET_HEADER));
}
