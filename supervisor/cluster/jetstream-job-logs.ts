// Log chunks of the JetStream job store: one stream (MUSTER_LOGS by default), one subject per
// (job, attempt, stream) — `<prefix>.<job_id>.<attempt>.<stream>` — and one message per chunk, its
// stream sequence the chunk's `cursor`. A chunk is published with `Nats-Msg-Id`
// `<job_id>:<attempt>:<stream>:<seq>`, so a repeat inside the duplicate window is dropped by the
// server, and with `Nats-Expected-Last-Subject-Sequence` set to the last chunk of its subject, so
// the append is a compare-and-set on that subject: a chunk is stored only right after its
// predecessor. That keeps `duplicate` (seq at or below the last stored) and `gap` (beyond the next)
// exact whatever the window, and across replicas appending for one job.
import { StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers, nanos } from '@nats-io/nats-core';
import type { LogStream } from '../../protocol/messages.js';
import type { AppendLogOutcome, LogRecord } from '../store/job-store.js';
import { isStreamNotFound, isWrongLast } from './jetstream-errors.js';
import { readStream } from './stream-read.js';

const SEQ_HEADER = 'Muster-Log-Seq';
const MAX_RACES = 20;

export interface JobLogsOptions {
  stream: string;
  /** Subject prefix: chunks go to `<prefix>.<job_id>.<attempt>.<stream>`. */
  subject: string;
  replicas: number;
  /** The server's de-duplication window for `Nats-Msg-Id`. */
  duplicateWindowMs: number;
}

/** The last chunk stored on a subject: its `seq` in the log and its stream sequence. */
interface Tail {
  seq: number;
  streamSeq: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class JetStreamJobLogs {
  /** The last tail seen per subject: the first guess of an append (a wrong one costs a re-read). */
  readonly #tails = new Map<string, Tail>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly o: JobLogsOptions,
  ) {}

  async ensureStream(): Promise<void> {
    const config = {
      name: this.o.stream,
      subjects: [`${this.o.subject}.>`],
      storage: StorageType.File,
      num_replicas: this.o.replicas,
      duplicate_window: nanos(this.o.duplicateWindowMs),
    };
    try {
      await this.jsm.streams.info(this.o.stream);
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      await this.jsm.streams.add(config);
    }
  }

  async append(jobId: string, attempt: number, stream: LogStream, seq: number, data: string): Promise<AppendLogOutcome> {
    const subject = `${this.o.subject}.${jobId}.${attempt}.${stream}`;
    let tail = this.#tails.get(subject) ?? (await this.#readTail(subject));
    for (let race = 0; race < MAX_RACES; race++) {
      const next = tail === undefined ? 0 : tail.seq + 1;
      if (seq < next) return { status: 'duplicate' };
      if (seq > next) return { status: 'gap', nextSeq: next };
      const h = headers();
      h.set(SEQ_HEADER, String(seq));
      try {
        const ack = await this.js.publish(subject, encoder.encode(data), {
          msgID: `${jobId}:${attempt}:${stream}:${seq}`,
          headers: h,
          expect: { lastSubjectSequence: tail?.streamSeq ?? 0 },
        });
        if (ack.duplicate) return { status: 'duplicate' };
        this.#remember(subject, { seq, streamSeq: ack.seq });
        return { status: 'stored' };
      } catch (err) {
        if (!isWrongLast(err)) throw err;
        // Another writer appended to this subject since (or the guess was old): read it again.
        tail = await this.#readTail(subject);
      }
    }
    throw new Error(`log append for ${subject} lost ${MAX_RACES} races in a row`);
  }

  /** Every chunk of `jobId` after `afterCursor`, in stream (arrival) order. */
  async read(jobId: string, afterCursor = 0): Promise<LogRecord[]> {
    const prefix = `${this.o.subject}.${jobId}.`;
    const messages = await readStream(this.js, this.jsm, this.o.stream, `${prefix}>`, afterCursor);
    return messages.map((m) => {
      const [attempt, stream] = m.subject.slice(prefix.length).split('.');
      return {
        attempt: Number(attempt),
        stream: stream as LogStream,
        seq: Number(m.headers?.get(SEQ_HEADER)),
        data: decoder.decode(m.data),
        cursor: m.seq,
      };
    });
  }

  async #readTail(subject: string): Promise<Tail | undefined> {
    const last = await this.jsm.streams.getMessage(this.o.stream, { last_by_subj: subject });
    if (last === null) return undefined;
    const tail = { seq: Number(last.header.get(SEQ_HEADER)), streamSeq: last.seq };
    this.#remember(subject, tail);
    return tail;
  }

  // Bounded: a tail only saves a read, so forgetting the oldest costs one read later.
  #remember(subject: string, tail: Tail): void {
    this.#tails.delete(subject);
    this.#tails.set(subject, tail);
    if (this.#tails.size > 10_000) this.#tails.delete(this.#tails.keys().next().value as string);
  }
}
