// The in-process Bus of the embedded control plane: synchronous fan-out to subscribers.
// A subscriber that throws is isolated so that it cannot break the publisher.
import type { Bus, BusEvent, BusHandler } from './bus.js';

export class LocalBus implements Bus {
  private readonly handlers = new Set<BusHandler>();

  constructor(private readonly onHandlerError: (err: unknown) => void = () => {}) {}

  publish(event: BusEvent, traceparent?: string): void {
    for (const handler of this.handlers) {
      try {
        handler(event, traceparent);
      } catch (err) {
        this.onHandlerError(err);
      }
    }
  }

  subscribe(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
