// Every metric of the control plane, defined in one place, on a registry of its own (not
// prom-client's global one: tests run several planes in one process, and each plane's
// `/metrics` must show its own). The parts of the plane count into plain numbers through the
// small methods below (one call at each place that counts); prom-client reads them, and the
// gauges that need a look at the fleet or the queue, only when `/metrics` is scraped.
// The README's metrics table lists every name defined here (a test checks it).
import { Registry } from 'prom-client';
import { CountingHistogram } from './counting-histogram.js';
import { registerProcessMetrics } from './process-metrics.js';
import { labelKey, LabelledCount, labelledCounter, labelledGauge, readCounter, readGauge } from './scraped-metrics.js';

/** What the plane's gauges read at scrape: counts by label value, from the indexes the plane keeps anyway. */
export interface PlaneReadings {
  /** Open node connections by transport (`tcp`, `tls`, `unix`, `ws`, `wss`, `grpc`, `grpcs`). */
  connections(): Iterable<[string, number]>;
  /** Nodes by state (`registering`, `ready`, `busy`, `draining`, `dead`). */
  nodes(): Iterable<[string, number]>;
  /** Queued jobs by priority. */
  queueDepth(): Iterable<[string, number]>;
  /** Jobs in the store by state. */
  jobs(): Promise<Iterable<[string, number]>>;
}

/** Who failed to authenticate: a node's `RegisterNode`, or an admin API request (401). */
export type AuthFailureKind = 'node' | 'api';

/**
 * What was refused for going over a limit: a node connection over its address's connection
 * rate (or refused after probation), a connection from a banned address, a node frame over
 * the node's message or byte rate (dropped), an admin API request from a banned or
 * over-budget address, an admin API request over its token's rate.
 */
export type RefusalKind = 'node_connection' | 'node_banned' | 'node_message' | 'api_address' | 'api_token';

// Seconds. A heartbeat's lag is mostly 0 (on time); its tail nears the node's expiry window.
const LAG_BUCKETS = [0, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DISPATCH_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const JOB_DURATION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];

/**
 * The node connections' counts: connections let in, every frame and message in and out, and
 * the heartbeats' lag.
 * Called for each frame, so every method is a few additions on plain numbers.
 */
export class WireMeter {
  framesIn = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Connections let in, by transport. */
  readonly opened = new LabelledCount();
  readonly messagesIn = new LabelledCount();
  readonly messagesOut = new LabelledCount();
  readonly errorsOut = new LabelledCount();
  readonly heartbeatLag: CountingHistogram;

  constructor(
    registry: Registry,
    /** The plane's rate-limit refusals, which frames dropped over a node's rate count into. */
    private readonly refusals: LabelledCount,
  ) {
    this.heartbeatLag = new CountingHistogram(
      {
        name: 'muster_heartbeat_lag_seconds',
        help: "How much later than its heartbeat interval each heartbeat came after the node's previous frame (0: on time).",
        buckets: LAG_BUCKETS,
      },
      registry,
    );
  }

  /** A node connection was let in through the gate. */
  connectionOpened(transport: string): void {
    this.opened.add(transport);
  }

  /** A frame arrived from a node (`bytes`: codec byte and body, as `max_frame_bytes` counts). */
  frameIn(bytes: number): void {
    this.framesIn++;
    this.bytesIn += bytes;
  }

  /** A frame was read as a message of `type` (not a Heartbeat: see `heartbeat`), or as `invalid` (it did not decode or validate). */
  messageIn(type: string): void {
    this.messagesIn.add(type);
  }

  /**
   * A Heartbeat was received, `lateMs` after the node's interval had passed since its previous
   * frame (negative: early). The lag histogram's count is the Heartbeat count: the commonest
   * message costs one call and no Map lookup.
   */
  heartbeat(lateMs: number): void {
    this.heartbeatLag.observe(lateMs > 0 ? lateMs / 1000 : 0);
  }

  /** Messages received by type, Heartbeats included. */
  *messagesReceived(): IterableIterator<[string, number]> {
    yield* this.messagesIn.entries();
    if (this.heartbeatLag.count > 0) yield ['Heartbeat', this.heartbeatLag.count];
  }

  /** A message went to a node (`bytes`: codec byte and body). */
  messageOut(type: string, bytes: number): void {
    this.messagesOut.add(type);
    this.bytesOut += bytes;
  }

  /** An `Error` with `code` went to a node (or to a connection refused before its session started). */
  protocolError(code: string): void {
    this.errorsOut.add(code);
  }

  /** A node's frame was dropped: over its message or byte rate. */
  rateLimited(): void {
    this.refusals.add('node_message');
  }

  /** Every message sent to nodes, of any type. */
  get messagesSent(): number {
    return this.messagesOut.total();
  }
}

export class PlaneMetrics {
  readonly registry = new Registry();
  readonly wire: WireMeter;
  private readings: PlaneReadings | undefined;
  private readonly registrations = new LabelledCount();
  private readonly authFailures = new LabelledCount();
  private readonly refusals = new LabelledCount();
  private readonly results = new LabelledCount();
  private readonly dispatch: CountingHistogram;
  private readonly durations: CountingHistogram;

  constructor(options: { processMetrics?: boolean } = {}) {
    const r = this.registry;
    this.wire = new WireMeter(r, this.refusals);
    const read = (pick: (readings: PlaneReadings) => Iterable<[string, number]>): (() => Iterable<[string, number]>) =>
      () => (this.readings === undefined ? [] : pick(this.readings));

    labelledGauge(r, { name: 'muster_node_connections', help: 'Node connections open now, by transport.', labelName: 'transport' }, read((x) => x.connections()));
    labelledCounter(r, { name: 'muster_node_connections_opened_total', help: 'Node connections let in (past the gate), by transport.', labelNames: ['transport'] }, this.wire.opened);
    labelledCounter(r, { name: 'muster_messages_received_total', help: 'Messages received from nodes, by type (invalid: did not decode or validate).', labelNames: ['type'] }, () => this.wire.messagesReceived());
    labelledCounter(r, { name: 'muster_messages_sent_total', help: 'Messages sent to nodes, by type.', labelNames: ['type'] }, this.wire.messagesOut);
    readCounter(r, { name: 'muster_received_frames_total', help: 'Frames received from nodes: messages, invalid ones, and those dropped over a rate.' }, () => this.wire.framesIn);
    readCounter(r, { name: 'muster_received_bytes_total', help: 'Bytes of node frames received (codec byte and body).' }, () => this.wire.bytesIn);
    readCounter(r, { name: 'muster_sent_bytes_total', help: 'Bytes of frames sent to nodes (codec byte and body).' }, () => this.wire.bytesOut);
    labelledCounter(r, { name: 'muster_protocol_errors_total', help: 'Error messages sent to nodes, by error code.', labelNames: ['code'] }, this.wire.errorsOut);
    labelledGauge(r, { name: 'muster_nodes', help: 'Nodes by state (a disconnected node that may still resume keeps its state).', labelName: 'state' }, read((x) => x.nodes()));
    labelledCounter(r, { name: 'muster_node_registrations_total', help: 'Registrations acknowledged: new nodes, and sessions resumed after a reconnect.', labelNames: ['kind'] }, this.registrations);
    labelledCounter(r, { name: 'muster_auth_failures_total', help: 'Refused authentications: node registrations and admin API requests (401), by error code.', labelNames: ['kind', 'code'] }, this.authFailures);
    labelledCounter(r, { name: 'muster_rate_limited_total', help: 'Connections, frames and requests refused for going over a rate limit or from a banned address, by kind.', labelNames: ['kind'] }, this.refusals);
    labelledGauge(r, { name: 'muster_queue_depth', help: 'Jobs queued, by priority.', labelName: 'priority' }, read((x) => x.queueDepth()));
    labelledGauge(r, { name: 'muster_jobs', help: 'Jobs in the store, by state.', labelName: 'state' }, async () => (this.readings === undefined ? [] : this.readings.jobs()));
    labelledCounter(r, { name: 'muster_job_results_total', help: 'Job results stored, by status.', labelNames: ['status'] }, this.results);
    this.dispatch = new CountingHistogram(
      { name: 'muster_dispatch_latency_seconds', help: "From a job's submission to its first assignment to a node.", buckets: DISPATCH_BUCKETS },
      r,
    );
    this.durations = new CountingHistogram(
      { name: 'muster_job_duration_seconds', help: 'How long jobs ran, as their nodes measured it (the result\'s duration_ms), by status.', buckets: JOB_DURATION_BUCKETS, labelName: 'status' },
      r,
    );
    // The process's CPU, memory, file descriptors, heap and event-loop delay, as Node.js exporters name them.
    if (options.processMetrics ?? true) registerProcessMetrics(r);
  }

  /** Where the gauges read from at scrape; the plane sets it once its parts exist. */
  readFrom(readings: PlaneReadings): void {
    this.readings = readings;
  }

  /** A node registered (`RegisterAck` sent): new, or a resumed session. */
  registered(resumed: boolean): void {
    this.registrations.add(resumed ? 'resumed' : 'new');
  }

  authFailed(kind: AuthFailureKind, code: string): void {
    this.authFailures.add(labelKey(kind, code));
  }

  rateLimited(kind: RefusalKind): void {
    this.refusals.add(kind);
  }

  /** A job's first attempt was assigned, `queuedMs` after it was submitted. */
  dispatched(queuedMs: number): void {
    this.dispatch.observe(Math.max(0, queuedMs) / 1000);
  }

  /** A job result was stored. */
  jobResult(status: string, durationMs: number): void {
    this.results.add(status);
    this.durations.observeBy(status, Math.max(0, durationMs) / 1000);
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The metrics of a plane in a NATS cluster, on the plane's registry; created by the cluster's
 * code (an embedded plane has no leases, and shows none of these).
 */
export class ClusterMetrics {
  leasesHeld = 0;
  natsReconnects = 0;
  private readonly renewals: CountingHistogram;

  constructor(registry: Registry) {
    readGauge(registry, { name: 'muster_cluster_leases_held', help: 'Leases this replica holds now (its own liveness lease).' }, () => this.leasesHeld);
    this.renewals = new CountingHistogram(
      { name: 'muster_cluster_lease_renewal_seconds', help: "How long each renewal of this replica's lease took (compare-and-set round trip).", buckets: DISPATCH_BUCKETS },
      registry,
    );
    readCounter(registry, { name: 'muster_nats_reconnects_total', help: 'Times the connection to NATS was re-established.' }, () => this.natsReconnects);
  }

  leaseRenewed(tookMs: number): void {
    this.renewals.observe(tookMs / 1000);
  }
}
