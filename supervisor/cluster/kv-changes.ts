// What changed in a KV bucket after a stream sequence: each key's newest message (a bucket keeps
// that one whatever its history), in stream order, a batch at a time (stream-read.ts). A reader that keeps the last sequence it saw follows a bucket
// at the cost of what was written since, not of everything the bucket holds (the first read,
// from 0, reads it all once). A key whose newest message is a delete or purge marker comes as
// such, so that the reader forgets it.
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { streamMessages } from './stream-read.js';

/** Messages held at once: a few hundred small KV values. */
const BATCH = 256;

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
  const prefix = `$KV.${bucket}.`;
  // Following: what is written meanwhile comes too, and a key replaced meanwhile (counted in the
  // consumer's info, gone since) does not leave the read waiting.
  for await (const m of streamMessages(js, jsm, `KV_${bucket}`, `${prefix}>`, { afterSeq, batch: BATCH, follow: true })) {
    const op = m.headers?.get('KV-Operation');
    yield { key: m.subject.slice(prefix.length), seq: m.seq, op: op === 'DEL' || op === 'PURGE' ? op : 'PUT', at: m.info.timestampNanos / 1e6, value: m.data };
  }
}
