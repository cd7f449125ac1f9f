// The Bus over NATS: each replica publishes its events on `muster.evt.<kind>.<id>` with a
// `traceparent` header and hears every replica's on one subscription to `muster.evt.>`, its
// own included, as LocalBus delivers to its own subscribers. Events are hints (the stores hold
// the truth), so an outage loses some but never blocks: while NATS is away, events wait in a
// bounded queue (oldest dropped first, counted) and go out in order once it is back. Events that
// other replicas publish while this one is away, or before the server has its subscription
// again, are not heard: a replica reconciles from the stores after a reconnect.
import { randomUUID } from 'node:crypto';
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from '../../observability/logger.js';
import type { Bus, BusEvent, BusHandler } from '../bus/bus.js';
import { decodeBusEvent, encodeBusEvent } from './bus-event-codec.js';
import { boundedWait, serverHas } from './nats-waits.js';
import { NatsStatusTracker } from './nats-status.js';
import { EVENT_SUBJECTS, eventSubject } from './subjects.js';
import { traceparentOf } from '../../observability/spans.js';
import { processing, sending } from './nats-trace.js';
import { TRACEPARENT_HEADER, isTraceparent } from './traceparent.js';

export interface NatsBusOptions {
  nc: NatsConnection;
  logger: Logger;
  /** Called with what a subscriber threw (it is isolated: the others still hear the event). */
  onHandlerError?: (err: unknown) => void;
  /** Events kept while NATS is away; past it the oldest are dropped. Default 10,000 (~1.5 MB). */
  maxPendingEvents?: number;
  /** The connection's status, when its owner already follows it; default: the bus follows it itself. */
  status?: NatsStatusTracker;
  /** How long `close` waits for what was published to reach the server. Default 2,000 ms. */
  closeFlushMs?: number;
  /**
   * False: this bus's subscribers do not hear its own events back from the server (each is
   * marked with the bus's id in a header and dropped on its return), for an owner that delivers
   * them itself, in order with events that never cross NATS (replica-bus.ts). Default true.
   */
  hearOwn?: boolean;
}

/** The header naming the bus that published an event, when it does not want it back. */
const ORIGIN_HEADER = 'Muster-Bus';

/** Counts since the bus started, for metrics and tests. */
export interface NatsBusStats {
  published: number;
  heard: number;
  /** Messages on `muster.evt.>` that were not a valid event: logged and dropped. */
  undecodable: number;
  /** Events dropped because the outage queue was full, or the publish itself failed. */
  dropped: number;
  /** Events waiting for NATS to come back. */
  pending: number;
}

interface Pending {
  subject: string;
  data: Uint8Array;
  traceparent: string;
}

export class NatsBus implements Bus {
  private readonly handlers = new Set<BusHandler>();
  private readonly pending: Pending[] = [];
  private pendingStart = 0;
  private readonly counts = { published: 0, heard: 0, undecodable: 0, dropped: 0 };
  private readonly status: NatsStatusTracker;
  private readonly ownsStatus: boolean;
  private readonly stopWatching: () => void;
  private sub: Subscription | undefined;
  private closed = false;
  private lastUndecodableLog = -Infinity;
  /** Set when `hearOwn` is false: marks this bus's events so that it drops them on their return. */
  private readonly origin: string | undefined;

  private constructor(private readonly o: NatsBusOptions) {
    this.origin = o.hearOwn === false ? randomUUID() : undefined;
    this.ownsStatus = o.status === undefined;
    this.status = o.status ?? new NatsStatusTracker(o.nc);
    this.stopWatching = this.status.onChange((s) => {
      if (s.state === 'connected') this.sendPending();
    });
  }

  /** Subscribes to every event and resolves once the server has the subscription, so nothing published after is missed. */
  static async start(options: NatsBusOptions): Promise<NatsBus> {
    const bus = new NatsBus(options);
    bus.sub = options.nc.subscribe(EVENT_SUBJECTS, { callback: (err, msg) => bus.heard(err, msg) });
    await serverHas(options.nc, bus.status.state);
    return bus;
  }

  publish(event: BusEvent, traceparent?: string): void {
    if (this.closed) return;
    if (this.status.state === 'closed') {
      // The connection is gone for good (its owner closed it): nothing will send what waits.
      this.counts.dropped++;
      return;
    }
    const subject = eventSubject(event);
    const data = encodeBusEvent(event);
    sending(`muster.evt.${event.kind}`, subject, data.length, traceparent, (header) => {
      const item = { subject, data, traceparent: header };
      if (this.status.state === 'connected' && this.pendingCount() === 0) this.send(item);
      else this.queue(item);
    });
  }

  subscribe(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Resolves once the server has everything published so far (and so has delivered it to this replica's subscription). */
  async flush(): Promise<void> {
    await this.o.nc.flush();
  }

  stats(): NatsBusStats {
    return { ...this.counts, pending: this.pendingCount() };
  }

  /** Stops delivery at once and unsubscribes; what was published still goes out (bounded wait). The connection stays open: its owner closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    this.stopWatching();
    if (this.ownsStatus) this.status.stop();
    this.sub?.unsubscribe();
    if (this.pendingCount() > 0) this.o.logger.warn({ dropped: this.pendingCount() }, 'bus closed with events still waiting for NATS');
    if (this.status.state === 'connected' && !this.o.nc.isClosed()) await boundedWait(this.o.nc.flush(), this.o.closeFlushMs ?? 2_000);
  }

  private send(item: Pending): void {
    const h = headers();
    h.set(TRACEPARENT_HEADER, item.traceparent);
    if (this.origin !== undefined) h.set(ORIGIN_HEADER, this.origin);
    try {
      this.o.nc.publish(item.subject, item.data, { headers: h });
      this.counts.published++;
    } catch (err) {
      // Closed connection, or a payload over the server's max_payload: the event is lost, the caller is not hurt.
      this.counts.dropped++;
      this.o.logger.warn({ err, subject: item.subject }, 'bus event not published');
    }
  }

  private queue(item: Pending): void {
    if (this.pendingCount() >= (this.o.maxPendingEvents ?? 10_000)) {
      this.pendingStart++;
      this.counts.dropped++;
      if (this.pendingStart > 1_024 && this.pendingStart * 2 > this.pending.length) this.compact();
    }
    this.pending.push(item);
  }

  /** NATS is back: what waited goes out, in the order it was published. */
  private sendPending(): void {
    if (this.closed) return;
    const waiting = this.pendingCount();
    if (waiting === 0) return;
    for (let i = this.pendingStart; i < this.pending.length; i++) this.send(this.pending[i]!);
    this.pending.length = 0;
    this.pendingStart = 0;
    this.o.logger.info({ sent: waiting, dropped: this.counts.dropped }, 'NATS is back: sent the bus events that waited');
  }

  private pendingCount(): number {
    return this.pending.length - this.pendingStart;
  }

  private compact(): void {
    this.pending.splice(0, this.pendingStart);
    this.pendingStart = 0;
  }

  private heard(err: Error | null, msg: Msg): void {
    if (err !== null) {
      this.o.logger.error({ err }, 'bus subscription failed');
      return;
    }
    if (this.closed) return;
    if (this.origin !== undefined && msg.headers?.get(ORIGIN_HEADER) === this.origin) return;
    const decoded = decodeBusEvent(msg.subject, msg.data);
    if ('problem' in decoded) {
      this.counts.undecodable++;
      // At most one line a second: whoever floods the subject must not flood the log too.
      const now = Date.now();
      if (now - this.lastUndecodableLog >= 1_000) {
        this.lastUndecodableLog = now;
        this.o.logger.warn({ subject: msg.subject, problem: decoded.problem, undecodable: this.counts.undecodable }, 'dropped a message on the bus that is not an event');
      }
      return;
    }
    this.counts.heard++;
    const traceparent = msg.headers?.get(TRACEPARENT_HEADER);
    const trace = isTraceparent(traceparent) ? traceparent : undefined;
    processing(`muster.evt.${decoded.event.kind}`, msg.subject, msg.data.length, trace, () => this.deliver(decoded.event, traceparentOf() ?? trace));
  }

  private deliver(event: BusEvent, trace: string | undefined): void {
    for (const handler of this.handlers) {
      try {
        handler(event, trace);
      } catch (err) {
        (this.o.onHandlerError ?? ((e: unknown) => this.o.logger.error({ err: e }, 'bus subscriber failed')))(err);
      }
    }
  }
}
