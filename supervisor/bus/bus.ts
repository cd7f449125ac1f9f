// The Bus seam: events that every replica hears (job and node changes).
// The embedded plane uses an in-process bus (local-bus.ts), a cluster one over NATS
// (cluster/nats-bus.ts), behind the same interface, so nothing that publishes or subscribes
// knows which one runs. Delivery may be synchronous (local) or not (NATS): a subscriber must not
// assume that it has heard an event by the time `publish` returns.
import type { JobState } from '../store/job-store.js';
import type { NodeState } from '../../actors/node-machine.js';

export type BusEvent =
  | { kind: 'job'; job_id: string; state: JobState; attempt: number; node_id?: string }
  | { kind: 'log'; job_id: string; attempt: number }
  | { kind: 'node'; node_id: string; state: NodeState; owner: string };

/** Calls one subscriber; `traceparent` is the publisher's (W3C), when it gave one or the bus carries one. */
export type BusHandler = (event: BusEvent, traceparent?: string) => void;

export interface Bus {
  /** Sends `event` to every subscriber (of every replica); `traceparent` continues the caller's trace. */
  publish(event: BusEvent, traceparent?: string): void;
  /** Calls `handler` for every event published from now on; returns the unsubscribe function. */
  subscribe(handler: BusHandler): () => void;
  close(): Promise<void>;
}
