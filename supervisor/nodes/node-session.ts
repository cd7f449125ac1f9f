// One connected node: its connection, its actor, and the codec it speaks.
// Frames become validated messages and are sent to the actor; the actor's port
// (node-machine.ts `NodePort`) is implemented here by talking to the connection and
// handing everything else to the session's host (the control plane).
import { createActor, type Actor } from 'xstate';
import type { Logger } from 'pino';
import { nodeMachine, type Liveness, type NodeEvent, type NodeOutput, type NodePort, type Registration } from '../../actors/node-machine.js';
import { CODEC_JSON, ENCRYPTED_BIT, encodeBody, type Codec } from '../../protocol/codec.js';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import type { EnvelopeOf, NodeMessage, PlaneMessageType, MessageData } from '../../protocol/messages.js';
import { readNodeMessage } from '../../protocol/message-reader.js';
import type { Connection } from '../../transports/transport.js';
import { NodeRateLimit, type NodeRates } from '../security/node-rate-limit.js';
import type { NodeState } from '../../actors/node-machine.js';

/** What a session needs from the control plane. */
export interface SessionHost {
  readonly logger: Logger;
  readonly timing: { heartbeatIntervalMs: number; missedHeartbeats: number; registerTimeoutMs: number };
  /** Verifies a `RegisterNode` and decides the node id; throws a MusterError to refuse. */
  authenticate(session: NodeSession, message: EnvelopeOf<'RegisterNode'>): Promise<Registration>;
  /** The actor is online: bind the node, send `RegisterAck`. */
  registered(session: NodeSession, registration: Registration): void;
  /** A job protocol message from a registered node. */
  jobMessage(session: NodeSession, message: Extract<NodeMessage, { type: 'JobAccepted' | 'JobRejected' | 'LogChunk' | 'JobResult' }>): void;
  /** The node's state changed (for the registry, the bus and the scheduler). */
  stateChanged(session: NodeSession, state: NodeState): void;
  /** The actor ended; `output` says why and which jobs it still held. */
  ended(session: NodeSession, output: NodeOutput): void;
  /** Counters for stats. */
  readonly counters: { messagesReceived: number; messagesSent: number };
  /** Each connection's message and byte rates (node-rate-limit.ts); undefined: no limits. */
  readonly rates?: NodeRates;
  /**
   * The node went over its rates: told `rate_limited` (`answer`), or still at it after being
   * told (`abuse`): then the host bans its address and returns the error to close it with.
   */
  rateLimited?(session: NodeSession, verdict: 'answer' | 'abuse', dropped: number): MusterError | undefined;
  /** The connection closed (`reason`: the code the plane closed it with, or who closed it); the node may live on to resume. */
  connectionClosed?(session: NodeSession, reason: string): void;
}

export type NodeActor = Actor<typeof nodeMachine>;

export class NodeSession implements NodePort {
  readonly actor: NodeActor;
  /** Stamped on every frame; the actor's liveness timer reads it. */
  private readonly liveness: Liveness = { lastSeen: Date.now() };
  readonly logger: Logger;
  /** The codec of the node's `RegisterNode`; replies use it (PROTOCOL.md section 2). */
  private codec: Codec = CODEC_JSON;
  private registeredCodec = false;
  private lastState: NodeState = 'registering';
  /** The `id` of the message the actor is handling right now: errors it raises answer it as `reply_to`. */
  private handling: string | undefined;
  /** Checked on every frame before it is decoded; undefined when the host sets no limits. */
  private readonly rate: NodeRateLimit | undefined;
  /** The code of the error the plane closed the connection with, for the audit log. */
  private closeCode: string | undefined;

  constructor(
    readonly connection: Connection,
    private readonly host: SessionHost,
  ) {
    this.logger = host.logger.child({ conn_id: connection.id });
    this.rate = host.rates === undefined || NodeRateLimit.unlimited(host.rates) ? undefined : new NodeRateLimit(host.rates);
    this.actor = createActor(nodeMachine, { input: { ...host.timing, port: this, liveness: this.liveness } });
    this.actor.subscribe({
      next: () => this.noticeState(),
      error: (err) => this.crashed(err),
      complete: () => undefined,
    });
  }

  // ---- NodePort: what the actor asks for ----

  authenticate(message: EnvelopeOf<'RegisterNode'>): Promise<Registration> {
    // A refusal answers the RegisterNode, which may carry an id (PROTOCOL.md section 2).
    return this.host.authenticate(this, message).catch((err: unknown) => {
      throw err instanceof MusterError ? answering(err, message.id) : err;
    });
  }

  acknowledgeRegistration(registration: Registration): void {
    this.host.registered(this, registration);
  }

  replyError(error: MusterError): void {
    this.sendError(error);
  }

  closeConnection(error: MusterError | undefined): void {
    void this.closeWith(error);
  }

  handleJobMessage(message: Parameters<NodePort['handleJobMessage']>[0]): void {
    this.host.jobMessage(this, message);
  }

  sendDrain(): void {
    this.send('Drain', {});
  }

  // ---- the connection side ----

  /** Starts the actor and the flow of frames. */
  start(): void {
    this.actor.start();
    this.connection.start({
      frame: (codecByte, body) => this.onFrame(codecByte, body),
      error: (err) => this.actor.send({ type: 'frame.error', error: err }),
      // After the actor has ended (it closed the connection itself), there is no one left to tell.
      closed: (err) => {
        this.host.connectionClosed?.(this, this.closeCode ?? (err === undefined ? 'closed' : 'connection error'));
        if (this.actor.getSnapshot().status === 'active') this.actor.send({ type: 'connection.closed' });
      },
    });
  }

  get nodeId(): string | undefined {
    return this.actor.getSnapshot().context.nodeId;
  }

  get state(): NodeState {
    return this.lastState;
  }

  /** Sends one message in the node's codec. */
  send<T extends PlaneMessageType>(type: T, data: MessageData<T>, replyTo?: string): void {
    if (this.connection.isClosed) return;
    const envelope: { type: T; data: MessageData<T>; reply_to?: string } = { type, data };
    if (replyTo !== undefined) envelope.reply_to = replyTo;
    this.connection.send(this.codec, encodeBody(this.codec, envelope));
    this.host.counters.messagesSent++;
  }

  /** Sends `Error`; `replyTo` defaults to the id of the message being handled, if any. */
  sendError(err: MusterError, replyTo = this.handling): void {
    if (!err.fatal || err.code === 'internal') this.logger.warn({ code: err.code, field: err.field }, err.message);
    this.send('Error', err.toData(), err.replyTo ?? replyTo);
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    this.host.counters.messagesReceived++;
    this.liveness.lastSeen = Date.now();
    if (this.rate !== undefined && !this.rate.admit(body.length)) {
      this.overRate(this.rate);
      // Its next bytes wait in the kernel, then in the sender, rather than cost the plane a read.
      this.connection.pauseReading?.(this.rate.pauseMs(body.length));
      return;
    }
    if ((codecByte & ENCRYPTED_BIT) !== 0) {
      this.actor.send({ type: 'frame.error', error: new MusterError('unsupported_codec', 'encryption is not enabled on this listener') });
      return;
    }
    const codec = codecByte as Codec;
    if (!this.registeredCodec) this.codec = codec;
    let message: NodeMessage;
    const reading = performance.now();
    try {
      message = readNodeMessage(codec, body);
    } catch (err) {
      const error = toMusterError(err);
      this.deliver(error.replyTo, { type: 'frame.error', error });
      return;
    } finally {
      this.rate?.chargeDecoding(performance.now() - reading);
    }
    if (message.type === 'Heartbeat' && this.changesNothing(message)) return;
    this.deliver(message.id, eventOf(message));
  }

  /** A frame over the node's rates was dropped: tell the node (at most once a second), or close it when it keeps on. */
  private overRate(rate: NodeRateLimit): void {
    const verdict = rate.overRate();
    if (verdict === 'drop' || this.connection.isClosed) return;
    const closing = this.host.rateLimited?.(this, verdict, rate.dropped);
    if (verdict === 'abuse') {
      void this.closeWith(closing ?? new MusterError('rate_limited', 'kept over the message rate; closing'));
      return;
    }
    this.sendError(new MusterError('rate_limited', `over the node's message or byte rate: frames are dropped (${rate.dropped} so far)`));
  }

  /**
   * A heartbeat from this online node with the status the actor already holds: the frame's
   * stamp on the liveness cell is all it brings, so it need not cost the actor a transition.
   */
  private changesNothing(message: EnvelopeOf<'Heartbeat'>): boolean {
    if (this.lastState === 'registering' || this.lastState === 'dead') return false;
    const context = this.actor.getSnapshot().context;
    return message.data.node_id === context.nodeId && message.data.status === context.reportedStatus;
  }

  /** The actor handles `event` synchronously: errors it raises meanwhile answer message `id`. */
  private deliver(id: string | undefined, event: NodeEvent): void {
    if (event.type === 'RegisterNode' && this.lastState === 'registering') this.registeredCodec = true;
    this.handling = id;
    try {
      this.actor.send(event);
    } finally {
      this.handling = undefined;
    }
  }

  private noticeState(): void {
    const state = nodeStateOf(this.actor);
    if (state === this.lastState) return;
    this.lastState = state;
    this.host.stateChanged(this, state);
    if (state === 'dead') this.host.ended(this, this.actor.getSnapshot().output ?? { nodeId: this.nodeId, reason: 'expired', jobs: {} });
  }

  /** An action threw inside the actor: stop it, answer `internal`, close, leave nothing behind. */
  private crashed(err: unknown): void {
    this.logger.error({ err }, 'node actor failed');
    const snapshot = this.actor.getSnapshot();
    this.lastState = 'dead';
    this.host.stateChanged(this, 'dead');
    this.host.ended(this, { nodeId: snapshot.context.nodeId, reason: 'expired', jobs: snapshot.context.jobs });
    // Fatal here: the connection closes after it, and `fatal` says what the sender does.
    void this.closeWith(new MusterError('internal', 'internal error', { fatal: true }));
  }

  async closeWith(err: MusterError | undefined): Promise<void> {
    if (this.connection.isClosed) return;
    if (err !== undefined) this.sendError(err);
    this.closeCode ??= err === undefined ? 'closed by the control plane' : err.code;
    await this.connection.close();
  }
}

/** The protocol's node state (PROTOCOL.md section 7) from the actor's state value; runs per frame, so no `matches()`. */
export function nodeStateOf(actor: NodeActor): NodeState {
  const snapshot = actor.getSnapshot();
  if (snapshot.status !== 'active') return 'dead';
  const value: unknown = snapshot.value;
  if (value === 'dead') return 'dead';
  if (typeof value === 'object' && value !== null && 'online' in value) return value.online as NodeState;
  return 'registering';
}

/** The actor event for a validated message. */
function eventOf(message: NodeMessage): NodeEvent {
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
