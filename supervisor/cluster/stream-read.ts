// Reads what a stream holds on one subject filter, after a sequence, in stream order: an
// ephemeral pull consumer (filter_subject: nats-server 2.9 has no filter_subjects) whose info
// says how many messages there are, fetched and then deleted. For the reads of the JetStream
// stores that are not one key: a job's log chunks, the token records, revocations since a cursor,
// an artifact's chunks (artifact-chunks.ts) and what changed in a bucket (kv-changes.ts).
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';

const FETCH_EXPIRES_MS = 5_000;

export interface StreamReadOptions {
  /** Messages after this stream sequence (default 0: from the first). */
  afterSeq?: number;
  /** Messages fetched at once (default: all the consumer counted), so that a reader holds a few whatever the stream holds. */
  batch?: number;
  /**
   * Read past what the consumer counted when it was made, up to a message with nothing pending
   * behind it: what is written meanwhile comes too (a follower of a bucket). Default: stop at the count.
   */
  follow?: boolean;
}

/**
 * The messages on `filterSubject` in stream order, a batch at a time, through an ephemeral pull
 * consumer that is deleted when the reader is done (or stops early). The one way the JetStream
 * stores read more than one message: log chunks, token records, artifact chunks, a bucket's changes.
 */
export async function* streamMessages(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  filterSubject: string,
  o: StreamReadOptions = {},
): AsyncGenerator<JsMsg> {
  const afterSeq = o.afterSeq ?? 0;
  const info = await jsm.consumers.add(stream, {
    filter_subject: filterSubject,
    ack_policy: AckPolicy.None,
    inactive_threshold: nanos(60_000),
    mem_storage: true,
    ...(afterSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 } : { deliver_policy: DeliverPolicy.All }),
  });
  try {
    if (info.num_pending === 0) return;
    const consumer = await js.consumers.get(stream, info.name);
    for (let read = 0; ; ) {
      const before = read;
      const max = o.follow === true ? (o.batch ?? info.num_pending) : Math.min(o.batch ?? Infinity, info.num_pending - read);
      for await (const m of await consumer.fetch({ max_messages: max, expires: FETCH_EXPIRES_MS })) {
        read++;
        yield m;
        if (o.follow === true ? m.info.pending === 0 : read >= info.num_pending) return;
      }
      // Nothing came in a whole fetch: what the info counted was removed meanwhile.
      if (read === before) return;
    }
  } finally {
    await jsm.consumers.delete(stream, info.name).catch(() => undefined);
  }
}

/** Every message on `filterSubject` after `afterSeq` that the stream held when the read began. */
export async function readStream(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  filterSubject: string,
  afterSeq = 0,
): Promise<JsMsg[]> {
  const out: JsMsg[] = [];
  for await (const m of streamMessages(js, jsm, stream, filterSubject, { afterSeq })) out.push(m);
  return out;
}

/** A KV bucket's live (PUT) entries whose keys match `keyFilter`, after a stream sequence, as JSON. */
export async function readKvEntries<T>(
  js: JetStreamClient,
  jsm: JetStreamManager,
  bucket: string,
  keyFilter = '>',
  afterSeq = 0,
): Promise<Array<{ key: string; value: T; seq: number }>> {
  const prefix = `$KV.${bucket}.`;
  const messages = await readStream(js, jsm, `KV_${bucket}`, `${prefix}${keyFilter}`, afterSeq);
  return messages.filter(isPut).map((m) => ({ key: m.subject.slice(prefix.length), value: m.json<T>(), seq: m.seq }));
}

function isPut(m: JsMsg): boolean {
  const op = m.headers?.get('KV-Operation');
  return op === undefined || op === '' || op === 'PUT';
}
