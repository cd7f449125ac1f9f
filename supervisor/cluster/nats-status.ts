// The state of one NATS connection as a small object (`/readyz` and `GET /v1/cluster` will show
// it): connected, reconnecting or closed, how often it reconnected and the last error, kept
// up to date from nats.js's status events. Listeners hear each change of state.
import type { NatsConnection, Status } from '@nats-io/transport-node';

export type NatsState = 'connected' | 'reconnecting' | 'closed';

export interface NatsStatus {
  state: NatsState;
  /** The server (`host:port`) of the current or last connection. */
  server: string;
  /** Successful reconnects since the connection was opened. */
  reconnects: number;
  /** The last error the client or the server reported; undefined while none. */
  last_error: string | undefined;
  /** When `state` last changed (ISO 8601, UTC). */
  since: string;
}

export class NatsStatusTracker {
  private current: NatsStatus;
  private readonly listeners = new Set<(status: NatsStatus, previous: NatsState) => void>();
  private stopped = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly now: () => number = Date.now,
  ) {
    this.current = { state: initialState(nc), server: nc.getServer(), reconnects: 0, last_error: undefined, since: this.stamp() };
    void this.follow();
    void nc.closed().then((err) => {
      if (err instanceof Error) this.current.last_error = err.message;
      this.enter('closed');
    });
  }

  /** A copy of the current status. */
  status(): NatsStatus {
    return { ...this.current };
  }

  get state(): NatsState {
    return this.current.state;
  }

  /** Calls `listener` on every change of state, with the state it left; returns the function that stops it. */
  onChange(listener: (status: NatsStatus, previous: NatsState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops hearing the connection's events (the connection itself is its owner's to close). */
  stop(): void {
    this.stopped = true;
    this.listeners.clear();
  }

  private async follow(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (this.stopped) return;
      this.apply(status);
    }
  }

  private apply(status: Status): void {
    switch (status.type) {
      case 'disconnect':
        this.current.server = status.server;
        this.enter('reconnecting');
        break;
      case 'reconnecting':
        this.enter('reconnecting');
        break;
      case 'reconnect':
        this.current.server = status.server;
        this.current.reconnects++;
        this.enter('connected');
        break;
      case 'error':
        this.current.last_error = status.error.message;
        break;
      case 'staleConnection':
        this.current.last_error = 'stale connection: the server missed its pings';
        break;
      case 'close':
        this.enter('closed');
        break;
      default:
        break;
    }
  }

  private enter(state: NatsState): void {
    if (this.current.state === state || this.current.state === 'closed') return;
    const previous = this.current.state;
    this.current.state = state;
    this.current.since = this.stamp();
    const snapshot = this.status();
    for (const listener of this.listeners) {
      try {
        listener(snapshot, previous);
      } catch {
        // A listener reports its own failures; one that throws must not starve the others.
      }
    }
  }

  private stamp(): string {
    return new Date(this.now()).toISOString();
  }
}

/**
 * nats.js has no public "connected" flag; its protocol handler does. A tracker made during an
 * outage must not start out as connected, so it reads that flag where it exists.
 */
function initialState(nc: NatsConnection): NatsState {
  if (nc.isClosed()) return 'closed';
  const connected = (nc as { protocol?: { connected?: unknown } }).protocol?.connected;
  return connected === false ? 'reconnecting' : 'connected';
}
