// The Bus seam: events that every replica hears (job and node changes).
// The embedded plane uses an in-process bus (local-bus.ts); a NATS bus comes later behind
// the same interface, so nothing that publishes or subscribes knows which one runs.
import type { JobState } from '../store/job-store.js';
import type { NodeState } from '../../actors/node-machine.js';

export type BusEvent =
  | { kind: 'job'; job_id: string; state: JobState; attempt: number; node_id?: string }
  | { kind: 'log'; job_id: string; attempt: number }
  | { kind: 'node'; node_id: string; state: NodeState; owner: string };

export interface Bus {
  publish(event: BusEvent): void;
  /** Calls `handler` for every event published from now on; returns the unsubscribe function. */
  subscribe(handler: (event: BusEvent) => void): () => void;
  close(): Promise<void>;
}
