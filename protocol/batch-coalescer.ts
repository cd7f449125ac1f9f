// Outbound side of the `batch` wire feature (PROTOCOL.md section 8): messages of the kinds that
// come in bursts (a scheduler pass's assignments to one node, a job's log output) are held until
// the current turn of the event loop ends, then go out as few frames as they fit in: one Batch
// of at most BATCH_MAX envelopes and `maxBodyBytes` per frame, or the envelope alone when a
// burst is a single message. The owner flushes before it sends anything that is not held, so
// the order on the wire is the order of sending.
import type { Codec } from './codec.js';
import { batchBody, batchOverhead } from './batch.js';
import { BATCH_MAX } from './messages.js';

/**
 * The size a Batch body is kept to (unless the frame limit is lower): that of one full log chunk
 * (the agent's default 64 KiB). Neither side knows the other's `max_frame_bytes`; a peer that
 * takes the other's largest routine message takes its batches too, and batching pays for small
 * messages, not large ones.
 */
export const BATCH_TARGET_BYTES = 64 * 1024;

export interface BatchCoalescerOptions {
  codec: Codec;
  /** The largest body one frame may carry (`max_frame_bytes - 1`, before any compression); a Batch is kept to BATCH_TARGET_BYTES within it. */
  maxBodyBytes: number;
  /** Sends one frame's body; `types` are the messages it carries, in order. */
  write(body: Uint8Array, types: readonly string[]): void;
  /** The `id` of each Batch envelope; none when not given. */
  batchId?: () => string;
  /** Runs `flush` once the current turn is over; default `setImmediate`, after the turn's I/O callbacks and promises. */
  schedule?: (flush: () => void) => void;
}

export class BatchCoalescer {
  #bodies: Uint8Array[] = [];
  #types: string[] = [];
  #scheduled = false;

  constructor(private readonly o: BatchCoalescerOptions) {}

  /** Messages held, not yet written. */
  get pending(): number {
    return this.#bodies.length;
  }

  /** Holds one encoded envelope of `type` until the flush. */
  add(type: string, body: Uint8Array): void {
    this.#bodies.push(body);
    this.#types.push(type);
    if (this.#scheduled) return;
    this.#scheduled = true;
    (this.o.schedule ?? setImmediate)(() => {
      this.#scheduled = false;
      this.flush();
    });
  }

  /** Writes everything held, in order, as few frames as it fits in. */
  flush(): void {
    const bodies = this.#bodies;
    const types = this.#types;
    if (bodies.length === 0) return;
    const max = Math.min(this.o.maxBodyBytes, BATCH_TARGET_BYTES);
    this.#bodies = [];
    this.#types = [];
    let start = 0;
    while (start < bodies.length) {
      const id = this.o.batchId?.();
      let end = start;
      let bytes = 0;
      // As many as fit; always at least one (one too large for a frame goes alone, as it would unbatched).
      while (end < bodies.length && end - start < BATCH_MAX) {
        const next = bytes + bodies[end]!.length;
        if (end > start && next + batchOverhead(end - start + 1, id) > max) break;
        bytes = next;
        end++;
      }
      if (end - start === 1) this.o.write(bodies[start]!, [types[start]!]);
      else this.o.write(batchBody(this.o.codec, bodies.slice(start, end), id), types.slice(start, end));
      start = end;
    }
  }
}
