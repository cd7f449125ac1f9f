// The in-process Bus of the embedded control plane: synchronous fan-out to subscribers.
// A subscriber that throws is isolated so that it cannot break the publisher.
import type { Bus, BusEvent } from './bus.js';

export class LocalBus implements Bus {
  private readonly handlers = new Set<(event: BusEvent) => void>();

  constructor(private readonly onHandlerError: (err: unknown) => void = () => {}) {}

  publish(event: BusEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (err) {
        this.onHandlerError(err);
      }
    }
  }

  subscribe(handler: (event: BusEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}
