// What changed in a KV bucket after a stream sequence: each key's newest message (a bucket keeps
// that one whatever its history), in stream order, a batch at a time, through an ephemeral pull
// consumer that is deleted after. A reader that keeps the last sequence it saw follows a bucket
// at the cost of what was written since, not of everything the bucket holds (the first read,
// from 0, reads it all once). A key whose newest message is a delete or purge marker comes as
// such, so that the reader forgets it.
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';

/** Messages held at once: a few hundred small KV values. */
const BATCH = 256;
const FETCH_EXPIRES_MS = 5_000;

export interface KvChange {
  key: string;
  /** The stream sequence of the message: the key's revision. */
  seq: number;
  /** A live value, or the key's delete or purge marker. */
  op: 'PUT' | 'DEL' | 'PURGE';
  /** When the server stored it, ms since the epoch. */
  at: number;
  value: Uint8Array;
}

export async function* kvChanges(js: JetStreamClient, jsm: JetStreamManager, bucket: string, afterSeq: number): AsyncGenerator<KvChange> {
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.consumers.add(stream, {
    filter_subject: `${prefix}>`,
    ack_policy: AckPolicy.None,
    inactive_threshold: nanos(60_000),
    mem_storage: true,
    ...(afterSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 } : { deliver_policy: DeliverPolicy.All }),
  });
  try {
    if (info.num_pending === 0) return;
    const consumer = await js.consumers.get(stream, info.name);
    // Until a message with nothing pending behind it: what was written meanwhile comes too, and a
    // key replaced meanwhile (counted in the info, gone since) does not leave the read waiting.
    for (let done = false; !done; ) {
      let got = 0;
      for await (const m of await consumer.fetch({ max_messages: BATCH, expires: FETCH_EXPIRES_MS })) {
        got++;
        const op = m.headers?.get('KV-Operation');
        yield { key: m.subject.slice(prefix.length), seq: m.seq, op: op === 'DEL' || op === 'PURGE' ? op : 'PUT', at: m.info.timestampNanos / 1e6, value: m.data };
        if (m.info.pending === 0) {
          done = true;
          break;
        }
      }
      // Nothing in a whole fetch: what the info counted was removed meanwhile.
      if (got === 0) done = true;
    }
  } finally {
    await jsm.consumers.delete(stream, info.name).catch(() => undefined);
  }
}
