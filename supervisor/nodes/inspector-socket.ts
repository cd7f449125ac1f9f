// The WebSocket that carries the node actors' inspection events to a Stately inspector: the
// adapter `@statelyai/inspect`'s createInspector sends through. The package's own
// createWebSocketInspector has one (0.7.2, dist/index.mjs `WebSocketAdapter`) that retries a
// failed connection on a 5 s timer its `stop()` cannot cancel: a plane stopped while the
// inspector is unreachable would keep dialling it, and keep its process alive, for ever. This
// one sends the same JSON messages, holds the last 200 while not connected (as that one does),
// retries every 5 s on a timer that keeps no process alive, drops events while an inspector
// that reads too slowly has MAX_BUFFERED_BYTES unread, and stops for good on `stop()`.
import { WebSocket } from 'ws';
import type { StatelyInspectionEvent } from '@statelyai/inspect';

/** As the package's adapter: how long after a failed or lost connection it dials again, and how many events it holds meanwhile. */
export const RETRY_MS = 5_000;
export const HELD_EVENTS = 200;
/** Bytes sent but not yet taken by the inspector past which events are dropped: a slow inspector costs the plane no more memory. */
export const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export class InspectorSocket {
  #ws: WebSocket | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;
  readonly #held: StatelyInspectionEvent[] = [];

  constructor(private readonly url: string) {}

  start(): void {
    if (this.#ws !== undefined || this.#stopped) return;
    this.#dial();
  }

  send(event: StatelyInspectionEvent): void {
    const ws = this.#ws;
    if (ws?.readyState === WebSocket.OPEN) {
      if (ws.bufferedAmount <= MAX_BUFFERED_BYTES) ws.send(JSON.stringify(event));
      return;
    }
    this.#held.push(event);
    if (this.#held.length > HELD_EVENTS) this.#held.shift();
  }

  /** Bytes sent and not yet written to the inspector's socket. */
  get bufferedAmount(): number {
    return this.#ws?.bufferedAmount ?? 0;
  }

  /** Closes the connection (what was sent is flushed first) and dials no more. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#ws?.close();
  }

  #dial(): void {
    const ws = new WebSocket(this.url);
    this.#ws = ws;
    ws.on('open', () => {
      for (const event of this.#held.splice(0)) ws.send(JSON.stringify(event));
    });
    // A refused or broken connection: `close` follows, and the retry is decided there.
    ws.on('error', () => undefined);
    ws.on('close', () => {
      if (this.#stopped) return;
      this.#retry = setTimeout(() => this.#dial(), RETRY_MS);
      this.#retry.unref();
    });
  }
}
