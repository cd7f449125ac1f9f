// LogChunks produced while the agent has no registered connection. Bounded: past the
// limit new chunks are dropped with a warning (results are never dropped; they live in
// the outbox). A dropped chunk is not lost for good: the job runner keeps every chunk,
// and the control plane asks for the gap with a LogResync.
import type { Logger } from 'pino';
import type { MessageData } from '../protocol/messages.js';
import { AGENT_DEFAULTS } from './agent-options.js';

export interface QueuedChunk {
  chunk: MessageData<'LogChunk'>;
  traceparent?: string;
}

export class LogQueue {
  private items: QueuedChunk[] = [];
  private bytes = 0;
  private dropped = 0;

  constructor(
    private readonly logger: Logger,
    private readonly maxBytes: number = AGENT_DEFAULTS.maxQueuedLogBytes,
  ) {}

  get length(): number {
    return this.items.length;
  }

  /** Chunks dropped since the last drain. */
  get droppedCount(): number {
    return this.dropped;
  }

  push(item: QueuedChunk): void {
    const size = item.chunk.data.length;
    if (this.bytes + size > this.maxBytes) {
      // Warn on the first drop of a disconnected spell, not on every chunk.
      if (this.dropped === 0) {
        this.logger.warn(
          { queued_bytes: this.bytes, max_bytes: this.maxBytes, job_id: item.chunk.job_id },
          'log queue full while disconnected; dropping log chunks',
        );
      }
      this.dropped += 1;
      return;
    }
    this.items.push(item);
    this.bytes += size;
  }

  /** Everything queued, in order; the queue is empty afterwards. */
  drain(): QueuedChunk[] {
    const items = this.items;
    if (this.dropped > 0) this.logger.warn({ dropped_chunks: this.dropped }, 'log chunks were dropped while disconnected');
    this.items = [];
    this.bytes = 0;
    this.dropped = 0;
    return items;
  }
}
