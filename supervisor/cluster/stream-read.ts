// Reads what a stream holds on one subject filter, after a sequence, in stream order: an
// ephemeral pull consumer (filter_subject: nats-server 2.9 has no filter_subjects) whose info
// says how many messages there are, fetched and then deleted. For the reads of the JetStream
// stores that are not one key: a job's log chunks, the token records, revocations since a cursor.
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';

const FETCH_EXPIRES_MS = 5_000;

export async function readStream(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  filterSubject: string,
  afterSeq = 0,
): Promise<JsMsg[]> {
  const info = await jsm.consumers.add(stream, {
    filter_subject: filterSubject,
    ack_policy: AckPolicy.None,
    inactive_threshold: nanos(60_000),
    mem_storage: true,
    ...(afterSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 } : { deliver_policy: DeliverPolicy.All }),
  });
  try {
    const out: JsMsg[] = [];
    if (info.num_pending === 0) return out;
    const consumer = await js.consumers.get(stream, info.name);
    while (out.length < info.num_pending) {
      const before = out.length;
      for await (const m of await consumer.fetch({ max_messages: info.num_pending - out.length, expires: FETCH_EXPIRES_MS })) {
        out.push(m);
      }
      // Nothing came in a whole fetch: what the info counted was removed meanwhile.
      if (out.length === before) break;
    }
    return out;
  } finally {
    await jsm.consumers.delete(stream, info.name).catch(() => undefined);
  }
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
