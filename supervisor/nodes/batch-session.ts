// The plane's side of the `batch` wire feature (PROTOCOL.md section 8), for a node session that
// turned it on. In: a Batch's envelopes are handled in order, each exactly as if it had come in
// its own frame (read and validated alone, counted on its own against the node's rates,
// answered on its own id); a fatal error about one stops the rest. Out: the messages the plane
// sends one node in bursts are held to the end of the turn and go out as one Batch
// (protocol/batch-coalescer.ts).
import { readBatch, readBatchedNodeMessage } from '../../protocol/batch.js';
import type { Codec } from '../../protocol/codec.js';
import type { MusterError } from '../../protocol/errors.js';
import type { BatchMessage, NodeMessage, PlaneMessageType } from '../../protocol/messages.js';

/**
 * What the plane sends one node several of at once: a scheduler pass's assignments, the acks of
 * results stored by one commit (a node resending its results after a reconnect), the cancels of
 * a pipeline. Anything else is sent at once, after whatever is held.
 */
export const BATCHED_PLANE_TYPES: ReadonlySet<PlaneMessageType> = new Set(['JobAssignment', 'JobResultAck', 'CancelJob']);

/** What handling a Batch needs of its session. */
export interface BatchPort {
  /** The codec of the frame, which each envelope is held to the size of its type in. */
  codec: Codec;
  /** Counts one more message against the node's rates; false: over them, and it is dropped as a frame over them is. */
  admit(): boolean;
  /** A message read from the Batch: handled as the session handles one from its own frame. */
  handle(message: NodeMessage): void;
  /** The error about one envelope (or about the whole Batch), answered as for a frame. */
  refuse(error: MusterError): void;
  /** False once the session is closing (a fatal error, an abusive rate, the node left): nothing more is handled. */
  open(): boolean;
  /** Charges the time reading one envelope took (ms) to the node's reading-time budget, as a frame's is; none: not timed. */
  chargeReading?(ms: number): void;
  /** Types the session did not turn on (an artifact message without `artifacts`): `unknown_type`, as alone. */
  turnedOff?(type: string): boolean;
}

export function handleBatch(batch: BatchMessage, port: BatchPort): void {
  const charge = port.chargeReading;
  const read = (envelope: unknown): NodeMessage => {
    if (charge === undefined) return readBatchedNodeMessage(port.codec, envelope, port.turnedOff);
    const started = performance.now();
    try {
      return readBatchedNodeMessage(port.codec, envelope, port.turnedOff);
    } finally {
      charge(performance.now() - started);
    }
  };
  let first = true;
  for (const item of readBatch(batch, read)) {
    if (!port.open()) return;
    // The frame's admission counted its first message; each further one counts on its own.
    if (!first && !port.admit()) continue;
    first = false;
    if ('error' in item) {
      port.refuse(item.error);
      if (item.error.fatal) return;
      continue;
    }
    port.handle(item.message);
  }
}
