// The bus of a cluster replica: node and log events go over NATS (nats-bus.ts), job events do
// not. Every job change is a write to the job bucket, which every replica's job store already
// watches to keep its index; the store announces each change another writer made as it learns of
// it (JetStreamJobStore.onForeignChange), and this replica's own go to its subscribers at once, in
// process, as on the embedded plane's bus. So a replica hears of each job change once (the watch
// entry it receives anyway) instead of twice (that entry and a bus event), and publishing one
// costs no message. Its own node and log events are delivered in process too, at once, so that
// its subscribers hear everything it publishes in the order it was published (the NATS bus then
// drops their return: `hearOwn: false`). Job events heard on NATS (from a replica of an older
// version) are dropped: the watch brings the same changes; such a replica, which places queued
// jobs on hearing their bus events, hears none from this one (do not mix the two).
//
// What changes for a subscriber: another replica's job events arrive as the watch delivers them
// (after the write, as before), handled under the job's own trace context (the store's watch
// makes the consumer span) rather than the publisher's, and two changes of one job
// that the watch delivers as one revision are one event; the events were hints before too.
import type { Bus, BusEvent, BusHandler } from '../bus/bus.js';
import { LocalBus } from '../bus/local-bus.js';
import type { JobChange } from './jetstream-job-store.js';
import type { NatsBus } from './nats-bus.js';

/** Where other writers' job changes come from: the job store's watch. */
export interface JobChangeSource {
  onForeignChange(handler: (change: JobChange) => void): () => void;
}

/** A ReplicaBus needs its NATS bus started with `hearOwn: false` (its own events it delivers itself). */
export class ReplicaBus implements Bus {
  readonly #local: LocalBus;
  readonly #stops: Array<() => void>;

  constructor(
    readonly nats: NatsBus,
    jobs: JobChangeSource,
    onHandlerError: (err: unknown) => void,
  ) {
    this.#local = new LocalBus(onHandlerError);
    this.#stops = [
      jobs.onForeignChange((change) => this.#local.publish(change)),
      nats.subscribe((event, traceparent) => {
        if (event.kind !== 'job') this.#local.publish(event, traceparent);
      }),
    ];
  }

  publish(event: BusEvent, traceparent?: string): void {
    this.#local.publish(event, traceparent);
    if (event.kind !== 'job') this.nats.publish(event, traceparent);
  }

  subscribe(handler: BusHandler): () => void {
    return this.#local.subscribe(handler);
  }

  /** Resolves once the server has every node and log event published so far. */
  flush(): Promise<void> {
    return this.nats.flush();
  }

  async close(): Promise<void> {
    for (const stop of this.#stops) stop();
    await this.#local.close();
    await this.nats.close();
  }
}
