// `submitMany` all or none over JetStream 2.9, which has no multi-key transaction: a batch is
// committed by one message on a stream (MUSTER_JOB_BATCHES) before any of its jobs is created
// in the bucket, and the store then creates them and deletes the message. A batch too large for
// one message (max_payload, 1 MB by default) goes as parts first and then a commit message that
// lists them; only the commit (or a batch that fits in one message, which is its own commit) is
// the commit point.
//
// Why all or none across a replica crash: before the commit is acknowledged no job of the batch
// exists (the creates come after it), and the writer answers an error; after it, the batch's
// messages stay on the stream until every job is created, and any store finishes a committed
// batch older than `recoveryMs` (at open and on a timer; a create of a job already there changes
// nothing). So a crash at any point leaves either none of the batch (uncommitted parts are
// deleted once 3 × `recoveryMs` old) or, once recovered, all of it. The writer gives up rather
// than commit when writing its parts took longer than `recoveryMs`, so a part is never deleted
// under a commit still coming (assuming replica clocks agree with the server's within
// 2 × `recoveryMs`). A reader may see the first jobs of a batch a little before its last.
import { randomUUID } from 'node:crypto';
import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { MusterError } from '../../protocol/errors.js';
import type { JobDoc } from './job-doc.js';
import { readStream } from './stream-read.js';

export interface BatchJob {
  id: string;
  doc: JobDoc;
}

/** One message of a batch: a part (`commit` absent) or a commit listing its parts' stream sequences. */
interface BatchMessage {
  batch: string;
  jobs: BatchJob[];
  commit?: { parts: number[] };
}

export interface JobBatchesOptions {
  stream: string;
  subject: string;
  recoveryMs: number;
  /** The largest message the server takes (its `max_payload`). */
  maxPayload: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Room left in each message for the headers and the JSON around the jobs. */
const HEADROOM = 16 * 1024;

export class JobBatches {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly o: JobBatchesOptions,
  ) {}

  /** Commits `jobs` as one batch; resolves with its messages' sequences once the commit is acknowledged. */
  async commit(jobs: BatchJob[], write: <T>(fn: () => Promise<T>) => Promise<T>): Promise<number[]> {
    const batch = randomUUID();
    const chunks = this.#split(jobs);
    if (chunks.length === 1) {
      return [await write(() => this.#publish({ batch, jobs, commit: { parts: [] } }))];
    }
    const started = performance.now();
    const parts = await Promise.all(chunks.map((chunk) => write(() => this.#publish({ batch, jobs: chunk }))));
    if (performance.now() - started > this.o.recoveryMs) {
      // Too slow to be sure a recovering store did not already give these parts up: abandon them.
      await this.discard(parts);
      throw new MusterError('internal', 'a job batch took too long to write to NATS JetStream: nothing was submitted');
    }
    return [...parts, await write(() => this.#publish({ batch, jobs: [], commit: { parts } }))];
  }

  /** Deletes a batch's messages once its jobs are all in the bucket (or it was abandoned). */
  async discard(seqs: readonly number[]): Promise<void> {
    await Promise.all(seqs.map((seq) => this.jsm.streams.deleteMessage(this.o.stream, seq, false).catch(() => false)));
  }

  /**
   * Finishes the committed batches a dead store left (older than `recoveryMs`) with `create`,
   * and deletes uncommitted parts old enough that no commit can still come for them.
   */
  async recover(create: (jobs: BatchJob[]) => Promise<unknown>): Promise<void> {
    const messages = await readStream(this.js, this.jsm, this.o.stream, this.o.subject);
    const bySeq = new Map(messages.map((m) => [m.seq, { m, body: JSON.parse(decoder.decode(m.data)) as BatchMessage }]));
    const committed = new Set<string>();
    for (const { m, body } of bySeq.values()) {
      if (body.commit === undefined) continue;
      committed.add(body.batch);
      if (ageMs(m) < this.o.recoveryMs) continue;
      const parts = body.commit.parts.map((seq) => bySeq.get(seq));
      // A part gone under its commit means the batch was given up by the rules above: none of it.
      if (parts.every((p) => p !== undefined)) await create([...parts.flatMap((p) => p!.body.jobs), ...body.jobs]);
      await this.discard([...body.commit.parts, m.seq]);
    }
    const stale = [...bySeq.values()].filter(({ m, body }) => body.commit === undefined && !committed.has(body.batch) && ageMs(m) > 3 * this.o.recoveryMs);
    await this.discard(stale.map(({ m }) => m.seq));
  }

  async #publish(message: BatchMessage): Promise<number> {
    return (await this.js.publish(this.o.subject, encoder.encode(JSON.stringify(message)), { msgID: `${message.batch}:${message.commit === undefined ? 'part' : 'commit'}:${message.jobs[0]?.id ?? ''}` })).seq;
  }

  /** The jobs in chunks that each fit in one message, in order. */
  #split(jobs: BatchJob[]): BatchJob[][] {
    const limit = Math.max(32 * 1024, this.o.maxPayload - HEADROOM);
    const chunks: BatchJob[][] = [[]];
    let size = 0;
    for (const job of jobs) {
      const bytes = encoder.encode(JSON.stringify(job)).length + 1;
      if (bytes > limit) throw new MusterError('invalid_message', `job ${job.id} is larger than one NATS message (${limit} bytes)`);
      if (size + bytes > limit && chunks.at(-1)!.length > 0) {
        chunks.push([]);
        size = 0;
      }
      chunks.at(-1)!.push(job);
      size += bytes;
    }
    return chunks;
  }
}

function ageMs(m: JsMsg): number {
  return Date.now() - m.time.getTime();
}
