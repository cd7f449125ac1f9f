// One connected node: its connection, its actor, and the codec it speaks.
// Frames become validated messages and are sent to the actor; the effects the actor emits
// (node-machine.ts `NodeEmitted`) are carried out here, by talking to the connection and
// handing everything else to the session's host (the control plane). An effect that fails
// is told to the actor (`effect.failed`), which decides what becomes of the node.
import { DEFAULT_MAX_FRAME_BYTES } from '../../protocol/frame-decoder.js';
import { deflateBody, inflateBody } from '../../transports/deflate-body.js';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import type { Logger } from 'pino';
import type { JobHoldings } from '../../actors/node-capacity.js';
import { systemClock, type Liveness, type NodeClock } from '../../actors/node-liveness.js';
import {
  nodeMachine,
  nodeStateOf,
  passesJobMessage,
  skipsActor,
  type JobMessage,
  type NodeEmitted,
  type NodeEvent,
  type NodeOutput,
  type NodeState,
  type Registration,
} from '../../actors/node-machine.js';
import { type Codec, CODEC_JSON, DEFLATE_BIT, encodeBody, ENCRYPTED_BIT } from '../../protocol/codec.js';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import { FEATURE_OF_TYPE, type EnvelopeOf, type NodeMessage, type PlaneMessageType, type MessageData, type WireFeature } from '../../protocol/messages.js';
import { readNodeFrame, SCAN_MIN_BYTES } from '../../protocol/message-reader.js';
import { BatchCoalescer } from '../../protocol/batch-coalescer.js';
import { BATCHED_PLANE_TYPES, handleBatch } from './batch-session.js';
import type { Connection } from '../../transports/transport.js';
import type { WireMeter } from '../../observability/plane-metrics.js';
import { NodeRateLimit, type NodeRates } from '../security/node-rate-limit.js';
import { MessageRing } from './message-ring.js';
import { failSpan, messageSpanOptions, MUSTER, SpanKind, startSpan, traceparentOf, tracingOn, withSpan, type Span } from '../../observability/spans.js';

/** What a session needs from the control plane. */
export interface SessionHost {
  readonly logger: Logger;
  readonly timing: { heartbeatIntervalMs: number; missedHeartbeats: number; registerTimeoutMs: number };
  /** Where the jobs each node holds are kept; the actor reads it to decide ready or busy. */
  readonly holdings: JobHoldings;
  /** The actors' time; the process clock when not given. */
  readonly clock?: NodeClock;
  /** Verifies a `RegisterNode` and decides the node id; throws a MusterError to refuse. */
  authenticate(session: NodeSession, message: EnvelopeOf<'RegisterNode'>): Promise<Registration>;
  /** The actor is online: bind the node, send `RegisterAck`. */
  registered(session: NodeSession, registration: Registration): void;
  /** A job protocol message from a registered node. */
  jobMessage(session: NodeSession, message: Extract<NodeMessage, { type: 'JobAccepted' | 'JobRejected' | 'LogChunk' | 'JobResult' }>): void;
  /** The node's state changed (for the registry, the bus and the scheduler). */
  stateChanged(session: NodeSession, state: NodeState): void;
  /** The actor ended; `output` says why (its jobs are the job coordinator's to requeue or keep). */
  ended(session: NodeSession, output: NodeOutput): void;
  /** Every validated message, once the actor has it (the library's `onMessage` shows those of registered nodes). */
  observed?(session: NodeSession, message: NodeMessage): void;
  /** `max_frame_bytes`: a compressed body may inflate to one byte less (default 1 MiB). */
  readonly maxFrameBytes?: number;
  /** Counts every frame and message in and out (`/metrics`, `/v1/stats`). */
  readonly meter: WireMeter;
  /** Each connection's message and byte rates (node-rate-limit.ts); undefined: no limits. */
  readonly rates?: NodeRates;
  /**
   * The node went over its rates: told `rate_limited` (`answer`), or still at it after being
   * told (`abuse`): then the host bans its address and returns the error to close it with.
   */
  rateLimited?(session: NodeSession, verdict: 'answer' | 'abuse', dropped: number): MusterError | undefined;
  /** The connection closed (`reason`: the code the plane closed it with, or who closed it); the node may live on to resume. */
  connectionClosed?(session: NodeSession, reason: string): void;
  /**
   * An `Artifact*` message on a session that turned `artifacts` on (PROTOCOL.md section 8).
   * `refund` gives the frame's cost back to the node's rates: a stored chunk is paced by the
   * artifact window, not by the byte rate (which would cut a large upload off).
   */
  artifactMessage?(session: NodeSession, message: ArtifactMessage, refund: () => void): void;
  /** xstate's `inspect` observer for every actor (`--inspect`, node-inspector.ts); undefined: the actors are not inspected, and pay nothing. */
  readonly inspect?: Observer<InspectionEvent>;
}

/** The node's messages of the `artifacts` wire feature. */
export type ArtifactMessage = EnvelopeOf<'ArtifactStart'> | EnvelopeOf<'ArtifactChunk'> | EnvelopeOf<'ArtifactEnd'>;

export type NodeActor = Actor<typeof nodeMachine>;

/** How many of a node's last state changes `GET /v1/nodes/{id}` shows. */
const TRANSITIONS_KEPT = 10;

/** One state change of a node; `at` in epoch milliseconds (kept small: there is one list per node). */
export interface StateTransition {
  from: NodeState;
  to: NodeState;
  at: number;
  /** The type of the last event the actor was sent before it (a raised one is not: its cause is). */
  event: string;
}

export class NodeSession {
  readonly actor: NodeActor;
  /** The actor's liveness record: every frame stamps it, with no transition. */
  private readonly liveness: Liveness;
  #logger: Logger | undefined;
  /** The wire features turned on by the RegisterAck (PROTOCOL.md section 8). */
  readonly #features = new Set<WireFeature>();
  /** A type of a wire feature this session did not turn on: read as a type it does not know. */
  readonly #turnedOff = (type: string): boolean => {
    const feature = FEATURE_OF_TYPE[type as keyof typeof FEATURE_OF_TYPE];
    return feature !== undefined && !this.#features.has(feature);
  };
  /** Set once the session agreed to `deflate`: bodies from this size on go out compressed. */
  #compressFrom: number | undefined;
  /** Set once the session agreed to `batch`: Batch frames are read, and bursts go out as one (batch-session.ts). */
  #batcher: BatchCoalescer | undefined;
  /** The codec of the node's `RegisterNode`; replies use it (PROTOCOL.md section 2). */
  private codec: Codec = CODEC_JSON;
  private registeredCodec = false;
  private lastState: NodeState = 'registering';
  /** The type of the last event delivered to the actor (timers' included), for `transitions`. */
  private lastEvent = 'start';
  /** The last state changes, oldest first, at most TRANSITIONS_KEPT. */
  readonly transitions: StateTransition[] = [];
  /** The last messages in and out, their types, ids, times and sizes (never their data), for `GET /v1/nodes/{id}`. */
  readonly messages = new MessageRing();
  /** The `id` of the message the actor is handling right now: errors it raises answer it as `reply_to`. */
  private handling: string | undefined;
  /** Checked on every frame before it is decoded; undefined when the host sets no limits. */
  private readonly rate: NodeRateLimit | undefined;
  /** The code of the error the plane closed the connection with, for the audit log. */
  private closeCode: string | undefined;
  /** `node session`: from the connection's start to its close (a no-op span while tracing is off). */
  private span: Span | undefined;

  constructor(
    readonly connection: Connection,
    private readonly host: SessionHost,
  ) {
    this.rate = host.rates === undefined || NodeRateLimit.unlimited(host.rates) ? undefined : new NodeRateLimit(host.rates);
    const clock = host.clock ?? systemClock;
    const input = { ...host.timing, clock, holdings: host.holdings };
    this.actor = createActor(nodeMachine, host.inspect === undefined ? { clock, input } : { clock, input, inspect: host.inspect });
    // What caused each transition, for the node's history: every event sent to the actor from
    // outside (this session, the API, the coordinator, the registrar) passes this `send`; one of
    // the actor's own timers, which xstate delivers without it, shows as `timer` (noticeState).
    // An inspector would tell the same, but xstate calls it for every snapshot, action and
    // microstep: 5-13 % of the plane's time in the Ready/Busy heartbeat benchmark (so only a
    // plane started with `--inspect` gives its actors one).
    const send = this.actor.send.bind(this.actor);
    this.actor.send = (event) => {
      this.lastEvent = event.type;
      send(event);
    };
    this.liveness = this.actor.getSnapshot().context.liveness;
    // One listener for every effect: a listener per type would cost each of a fleet's actors more.
    this.actor.on('*', (effect) => this.carryOut(effect));
    this.actor.subscribe({
      next: () => this.noticeState(),
      error: (err) => this.failed(err),
    });
  }

  /** The session's logger, with its `conn_id`: made on first use (a pino child costs each of a fleet's sessions, most never log). */
  get logger(): Logger {
    return (this.#logger ??= this.host.logger.child({ conn_id: this.connection.id }));
  }

  /** Whether lines at `level` are written at all: asked before a routine line, so that it makes no logger when not. */
  logs(level: 'info' | 'debug'): boolean {
    return this.host.logger.isLevelEnabled(level);
  }

  // ---- the actor's effects ----

  private carryOut(effect: NodeEmitted): void {
    try {
      this.effect(effect);
    } catch (err) {
      this.logger.error({ err, effect: effect.type }, 'node effect failed');
      if (this.actor.getSnapshot().status === 'active') this.actor.send({ type: 'effect.failed', error: err });
    }
  }

  private effect(effect: NodeEmitted): void {
    switch (effect.type) {
      case 'authenticate':
        this.authenticate(effect.message);
        return;
      case 'acknowledgeRegistration':
        this.host.registered(this, effect.registration);
        return;
      case 'replyError':
        this.sendError(effect.error);
        return;
      case 'closeConnection':
        void this.closeWith(effect.error);
        return;
      case 'handleJobMessage':
        this.host.jobMessage(this, effect.message);
        return;
      case 'sendDrain':
        this.send('Drain', {});
        return;
      case 'sendUndrain':
        this.send('Undrain', {});
        return;
      case 'sendConfigure':
        this.send('Configure', { heartbeat_interval_ms: effect.heartbeatIntervalMs });
        return;
    }
  }

  /** `process RegisterNode` spans the check and the answer (`RegisterAck` carries its context), under the node's context. */
  private authenticate(message: EnvelopeOf<'RegisterNode'>): void {
    // Without tracing, no span, attributes or closures for each of a storm's registrations.
    if (!tracingOn()) {
      this.host.authenticate(this, message).then(
        (registration) => this.tell({ type: 'auth.done', registration }),
        (err: unknown) => this.tell({ type: 'auth.failed', error: err instanceof MusterError ? answering(err, message.id) : err }),
      );
      return;
    }
    const span = startSpan('process RegisterNode', messageSpanOptions('process', 'RegisterNode', { [MUSTER.connectionId]: this.connection.id }), message.traceparent);
    this.host.authenticate(this, message).then(
      (registration) => {
        span.setAttributes({ [MUSTER.nodeId]: registration.nodeId, [MUSTER.resumed]: registration.resumed });
        this.span?.setAttribute(MUSTER.nodeId, registration.nodeId);
        withSpan(span, () => this.tell({ type: 'auth.done', registration }));
        span.end();
      },
      // A refusal answers the RegisterNode, which may carry an id (PROTOCOL.md section 2).
      (err: unknown) => {
        failSpan(span, err);
        withSpan(span, () => this.tell({ type: 'auth.failed', error: err instanceof MusterError ? answering(err, message.id) : err }));
        span.end();
      },
    );
  }

  /** Sends `event` to the actor unless it has ended (an answer that comes after the node is gone). */
  private tell(event: NodeEvent): void {
    if (this.actor.getSnapshot().status === 'active') this.actor.send(event);
  }

  // ---- the connection side ----

  /** Starts the actor and the flow of frames. */
  start(): void {
    if (tracingOn()) this.span = startSpan('node session', { kind: SpanKind.SERVER, attributes: { [MUSTER.connectionId]: this.connection.id } });
    this.actor.start();
    this.connection.start({
      frame: (codecByte, body) => this.onFrame(codecByte, body),
      error: (err) => this.tell({ type: 'frame.error', error: err }),
      // After the actor has ended (it closed the connection itself), there is no one left to tell.
      closed: (err) => {
        const reason = this.closeCode ?? (err === undefined ? 'closed' : 'connection error');
        this.host.connectionClosed?.(this, reason);
        this.tell({ type: 'connection.closed' });
        this.span?.setAttribute(MUSTER.closeReason, reason);
        this.span?.end();
      },
    });
  }

  get nodeId(): string | undefined {
    return this.actor.getSnapshot().context.nodeId;
  }

  get state(): NodeState {
    return this.lastState;
  }

  /** Sends one message in the node's codec; its `traceparent` is the one given, else the active span's (when tracing). */
  send<T extends PlaneMessageType>(type: T, data: MessageData<T>, replyTo?: string, traceparent = traceparentOf()): void {
    if (this.connection.isClosed) return;
    const envelope: { type: T; data: MessageData<T>; reply_to?: string; traceparent?: string } = { type, data };
    if (replyTo !== undefined) envelope.reply_to = replyTo;
    if (traceparent !== undefined) envelope.traceparent = traceparent;
    const body = encodeBody(this.codec, envelope);
    this.messages.out(type, replyTo, body.length, Date.now());
    if (this.#batcher !== undefined) {
      if (BATCHED_PLANE_TYPES.has(type)) return this.#batcher.add(type, body);
      // What is held goes first: the wire keeps the order of sending.
      this.#batcher.flush();
    }
    this.write(body, [type]);
  }

  /** One frame's body (a message, or a Batch of `types`) to the connection, compressed when agreed. */
  private write(body: Uint8Array, types: readonly string[]): void {
    if (this.connection.isClosed) return;
    let codecByte: number = this.codec;
    if (this.#compressFrom !== undefined && body.length >= this.#compressFrom) {
      body = deflateBody(body);
      codecByte |= DEFLATE_BIT;
    }
    this.connection.send(codecByte, body);
    // The frame's bytes once, each message it carries by its type.
    types.forEach((type, i) => this.host.meter.messageOut(type, i === 0 ? body.length + 1 : 0));
  }

  /** The session agreed to `batch` (after its RegisterAck, in the codec that answered): Batch frames are taken, bursts sent as one. */
  useBatches(): void {
    this.#batcher ??= new BatchCoalescer({
      codec: this.codec,
      maxBodyBytes: (this.host.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) - 1,
      write: (body, types) => this.write(body, types),
    });
  }

  /** The session agreed to `deflate`: bodies of at least `minBytes` go out compressed, and compressed ones are taken in. */
  compressFrom(minBytes: number): void {
    this.#compressFrom = minBytes;
  }

  /** The RegisterAck turned these wire features on: their messages are taken from now on. */
  turnOn(features: readonly WireFeature[]): void {
    for (const feature of features) this.#features.add(feature);
  }

  /** Whether the session turned `feature` on. */
  has(feature: WireFeature): boolean {
    return this.#features.has(feature);
  }

  /** Sends `Error`; `replyTo` defaults to the id of the message being handled, if any. */
  sendError(err: MusterError, replyTo = this.handling): void {
    if (!err.fatal || err.code === 'internal') this.logger.warn({ code: err.code, field: err.field }, err.message);
    if (!this.connection.isClosed) this.host.meter.protocolError(err.code);
    this.send('Error', err.toData(), err.replyTo ?? replyTo);
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    this.host.meter.frameIn(body.length + 1);
    const previous = this.liveness.lastHeard;
    this.liveness.heard();
    if (this.rate !== undefined && !this.rate.admit(body.length)) {
      this.overRate(this.rate);
      // Its next bytes wait in the kernel, then in the sender, rather than cost the plane a read.
      this.connection.pauseReading?.(this.rate.pauseMs(body.length));
      return;
    }
    if ((codecByte & ENCRYPTED_BIT) !== 0) {
      this.host.meter.messageIn('invalid');
      this.actor.send({ type: 'frame.error', error: new MusterError('unsupported_codec', 'encryption is not enabled on this listener') });
      return;
    }
    if ((codecByte & DEFLATE_BIT) !== 0) {
      const inflated = this.inflated(body);
      if (inflated === undefined) return;
      body = inflated;
      codecByte &= ~DEFLATE_BIT;
    }
    const codec = codecByte as Codec;
    if (!this.registeredCodec) this.codec = codec;
    let message: NodeMessage | EnvelopeOf<'Batch'>;
    // A small body's reading time is bounded by its size (and charged by the byte rate); only
    // larger ones are timed against the sender's reading-time budget.
    const timed = this.rate !== undefined && body.length > SCAN_MIN_BYTES;
    const reading = timed ? performance.now() : 0;
    let readingMs = 0;
    try {
      message = readNodeFrame(codec, body, this.#batcher !== undefined, this.#turnedOff);
    } catch (err) {
      this.host.meter.messageIn('invalid');
      const error = toMusterError(err);
      this.deliver(error.replyTo, { type: 'frame.error', error });
      return;
    } finally {
      if (timed) {
        const done = performance.now();
        readingMs = done - reading;
        this.rate?.chargeDecoding(readingMs, done);
      }
    }
    if (message.type === 'Batch') this.onBatch(message, codec, previous);
    else this.handle(message, previous, body.length, readingMs);
  }

  /**
   * A validated message, from its own frame or a Batch; `previous`: when the node's frame before
   * this one came; `bytes` and `readingMs`: what its frame cost (0 for one inside a Batch).
   */
  private handle(message: NodeMessage, previous: number, bytes: number, readingMs: number): void {
    // Its frame's arrival was stamped already: the time costs no clock read.
    this.messages.in(message.type, message.id, bytes, this.liveness.lastHeard);
    if (isArtifactMessage(message)) {
      this.host.meter.messageIn(message.type);
      this.artifactMessage(message, bytes, readingMs);
      this.host.observed?.(this, message);
      return;
    }
    if (message.type === 'Heartbeat') {
      // Any frame keeps a node alive (PROTOCOL.md 4.2), so its lag runs from the previous frame.
      this.host.meter.heartbeat(this.liveness.lastHeard - previous - this.liveness.intervalMs);
    } else {
      this.host.meter.messageIn(message.type);
    }
    // The machine's own decisions that such a heartbeat needs no transition, and that such a
    // job message is only handed on (as its `handleJobMessage` effect would be).
    if (message.type === 'Heartbeat' && skipsActor(this.actor.getSnapshot(), message)) {
      // Nothing for the actor.
    } else if (isJobMessage(message) && passesJobMessage(this.actor.getSnapshot(), message)) {
      // As if delivered: an error raised meanwhile (an effect that fails) answers this message.
      this.handling = message.id;
      try {
        this.carryOut({ type: 'handleJobMessage', message });
      } finally {
        this.handling = undefined;
      }
    } else {
      this.deliver(message.id, eventOf(message));
    }
    this.host.observed?.(this, message);
  }

  /** Each of a Batch's envelopes as if it had come alone (batch-session.ts); the reading pauses if any went over the rates. */
  private onBatch(batch: EnvelopeOf<'Batch'>, codec: Codec, previous: number): void {
    const rate = this.rate;
    let over = false;
    handleBatch(batch, {
      codec,
      admit: () => {
        if (rate === undefined || rate.admit(0)) return true;
        over = true;
        this.overRate(rate);
        return false;
      },
      handle: (message) => this.handle(message, previous, 0, 0),
      turnedOff: this.#turnedOff,
      refuse: (error) => {
        this.host.meter.messageIn('invalid');
        this.deliver(error.replyTo, { type: 'frame.error', error });
      },
      open: () => !this.connection.isClosed && this.actor.getSnapshot().status === 'active',
      ...(rate === undefined ? {} : { chargeReading: (ms: number) => rate.chargeDecoding(ms) }),
    });
    if (over && rate !== undefined) this.connection.pauseReading?.(rate.pauseMs(0));
  }

  /** An artifact message goes to the host when the session turned `artifacts` on; else it is a type this session does not know. */
  private artifactMessage(message: ArtifactMessage, bytes: number, readingMs: number): void {
    // The reader refused it already when the session did not turn `artifacts` on.
    if (this.host.artifactMessage === undefined) {
      this.deliver(message.id, { type: 'frame.error', error: new MusterError('unknown_type', `${message.type} is not taken here`, { replyTo: message.id }) });
      return;
    }
    this.handling = message.id;
    try {
      this.host.artifactMessage(this, message, () => this.rate?.refund(bytes, readingMs));
    } finally {
      this.handling = undefined;
    }
  }

  /**
   * A compressed body inflated within the frame limit, or undefined after the fatal error that
   * says why (`deflate` not agreed, past the limit, not DEFLATE). Inflating is reading: it is
   * charged to the sender's reading-time budget like decoding.
   */
  private inflated(body: Uint8Array): Uint8Array | undefined {
    if (this.#compressFrom === undefined) {
      this.actor.send({ type: 'frame.error', error: new MusterError('unsupported_codec', 'a compressed frame on a session that did not agree to deflate') });
      return undefined;
    }
    const started = this.rate === undefined ? 0 : performance.now();
    try {
      return inflateBody(body, (this.host.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES) - 1);
    } catch (err) {
      this.actor.send({ type: 'frame.error', error: toMusterError(err) });
      return undefined;
    } finally {
      if (this.rate !== undefined) {
        const done = performance.now();
        this.rate.chargeDecoding(done - started, done);
      }
    }
  }

  /** A frame over the node's rates was dropped: tell the node (at most once a second), or close it when it keeps on. */
  private overRate(rate: NodeRateLimit): void {
    this.host.meter.rateLimited();
    const verdict = rate.overRate();
    if (verdict === 'drop' || this.connection.isClosed) return;
    const closing = this.host.rateLimited?.(this, verdict, rate.dropped);
    if (verdict === 'abuse') {
      void this.closeWith(closing ?? new MusterError('rate_limited', 'kept over the message rate; closing'));
      return;
    }
    this.sendError(new MusterError('rate_limited', `over the node's message or byte rate: frames are dropped (${rate.dropped} so far)`));
  }

  /** The actor handles `event` synchronously: errors it raises meanwhile answer message `id`. */
  private deliver(id: string | undefined, event: NodeEvent): void {
    // Frames still in flight after the actor ended (its connection is closing): no one to tell.
    if (this.actor.getSnapshot().status !== 'active') return;
    if (event.type === 'RegisterNode' && this.lastState === 'registering') this.registeredCodec = true;
    this.handling = id;
    try {
      this.actor.send(event);
    } finally {
      this.handling = undefined;
    }
  }

  /** When the node was last heard from, on the actor's clock. */
  get lastHeard(): number {
    return this.liveness.lastHeard;
  }

  /** False from the moment the connection is gone (the actor's decision), until the node resumes or ends. */
  get connected(): boolean {
    return this.actor.getSnapshot().context.connected;
  }

  private noticeState(): void {
    const state = nodeStateOf(this.actor.getSnapshot());
    const event = this.lastEvent;
    // Until the next `send`, a change comes from one of the actor's own timers.
    this.lastEvent = 'timer';
    if (state === this.lastState) return;
    if (this.transitions.length === TRANSITIONS_KEPT) this.transitions.shift();
    this.transitions.push({ from: this.lastState, to: state, at: Date.now(), event });
    this.lastState = state;
    this.host.stateChanged(this, state);
    if (state === 'dead') this.host.ended(this, this.actor.getSnapshot().output ?? { nodeId: this.nodeId, reason: 'failed' });
  }

  /**
   * The machine's own code threw (a bug: its effects are caught in `carryOut`): xstate has
   * stopped the actor, which its snapshot now says (`dead`); answer `internal` and close.
   */
  private failed(err: unknown): void {
    this.logger.error({ err }, 'node actor failed');
    this.noticeState();
    void this.closeWith(new MusterError('internal', 'internal error', { fatal: true }));
  }

  async closeWith(err: MusterError | undefined): Promise<void> {
    if (this.connection.isClosed) return;
    this.#batcher?.flush();
    if (err !== undefined) this.sendError(err);
    this.closeCode ??= err === undefined ? 'closed by the control plane' : err.code;
    await this.connection.close();
  }
}

function isArtifactMessage(message: NodeMessage): message is ArtifactMessage {
  return message.type === 'ArtifactStart' || message.type === 'ArtifactChunk' || message.type === 'ArtifactEnd';
}

function isJobMessage(message: NodeMessage): message is JobMessage {
  return message.type === 'JobAccepted' || message.type === 'JobRejected' || message.type === 'LogChunk' || message.type === 'JobResult';
}

/** The actor event for a validated message. */
function eventOf(message: Exclude<NodeMessage, ArtifactMessage>): NodeEvent {
  switch (message.type) {
    case 'RegisterNode':
      return { type: 'RegisterNode', message };
    case 'Heartbeat':
      return { type: 'Heartbeat', message };
    case 'Deregister':
      return { type: 'Deregister', message };
    default:
      return { type: 'job.message', message };
  }
}

/** `err` as the answer to the message `id` (unchanged when it already answers one, or there is no id). */
function answering(err: MusterError, id: string | undefined): MusterError {
  if (id === undefined || err.replyTo !== undefined) return err;
  return new MusterError(err.code, err.message, { field: err.field, replyTo: id, fatal: err.fatal, cause: err.cause });
}
