// The node actor's machine: the one place that decides a node's state.
//
//   registering ──RegisterNode──► authenticating ──ok──► online: ready ⇄ busy → draining ──► dead
//
// It is driven only by decoded messages, by what the supervisor tells it (a job assigned or
// ended, the connection closed, the outcome of authentication), and by its own timers. Its
// effects leave it as emitted events (`actor.on('closeConnection', ...)`), which the
// supervisor's NodeSession carries out, so the machine knows no sockets or stores, and one
// machine definition serves every node (a per-node `provide()` would copy the machine:
// ~26 KiB per node). Time comes from the `clock` in its input (xstate's `clock` option
// drives its timers).
//
// Built for fleets of thousands of nodes per plane:
// - Ready or busy is re-decided only on the events that can change it (a job assigned or
//   ended, a change of reported status, the connection closing): no eventless transition is
//   evaluated after every frame. A job assigned (in ready) or ended (in busy) is decided by
//   that state's own guarded transition, the others raise `capacity`: a job is two events,
//   and a raised one is a microstep more each.
// - Liveness is the machine's own `Liveness` record; a frame only stamps it (`heard`), with
//   no transition. A heartbeat that changes nothing else is a transition that does nothing
//   (`steadyHeartbeat`), and the machine exports that decision (`skipsActor`) so that the
//   session need not deliver such a heartbeat at all: the common frame costs no snapshot.
// - Liveness is one delayed transition per node, armed for the moment the node would
//   expire; when it fires early (the node spoke since) it re-arms for the new moment.
// - A dropped connection is shown at once (`connected: false`, and busy: no room for a job)
//   but does not end the node: it may resume on a new connection within its heartbeat
//   window (PROTOCOL.md 4.6 and 4.8), which ends this actor as `replaced`; else it expires.
// - The heartbeat interval is the node's current one: the plane's heartbeat governor changes
//   it (`configure`, sent to the node as `Configure`), and the liveness window follows it
//   without ever bringing the node's deadline forward (node-liveness.ts `setInterval`).
import { assign, emit, not, raise, setup, type SnapshotFrom } from 'xstate';
import { MusterError } from '../protocol/errors.js';
import type { Capabilities, EnvelopeOf, NodeInfo, NodeStatus } from '../protocol/messages.js';
import { hasRoom, NO_RESOURCES, type JobHoldings, type Resources } from './node-capacity.js';
import { Liveness, type NodeClock } from './node-liveness.js';

/** The five states of the design card, as the API and the bus name them. */
export type NodeState = 'registering' | 'ready' | 'busy' | 'draining' | 'dead';

/** What authentication decides about a `RegisterNode`. */
export interface Registration {
  nodeId: string;
  resumed: boolean;
  info: NodeInfo;
  capabilities: Capabilities;
  /** The protocol version agreed for the session; 1 when not given. */
  protocolVersion?: number;
  /** The wire features its RegisterAck turned on (PROTOCOL.md section 8); none when not given. */
  wireFeatures?: readonly string[];
}

export type NodeEndReason = 'expired' | 'deregistered' | 'replaced' | 'shutdown' | 'rejected' | 'disconnected' | 'failed';

export type JobMessage = EnvelopeOf<'JobAccepted'> | EnvelopeOf<'JobRejected'> | EnvelopeOf<'LogChunk'> | EnvelopeOf<'JobResult'>;

/** What the machine asks of the world, as emitted events; the supervisor's NodeSession carries them out. */
export type NodeEmitted =
  /** Verify the token and decide the node id; answer with `auth.done` or `auth.failed`. */
  | { type: 'authenticate'; message: EnvelopeOf<'RegisterNode'> }
  /** The node is online: bind it and send `RegisterAck`. */
  | { type: 'acknowledgeRegistration'; registration: Registration }
  /** Answer a non-fatal error; the connection stays. */
  | { type: 'replyError'; error: MusterError }
  /** Send a fatal error (when given) and close the connection. */
  | { type: 'closeConnection'; error: MusterError | undefined }
  /** Hand a job protocol message to the supervisor's job handling. */
  | { type: 'handleJobMessage'; message: JobMessage }
  /** Send `Drain` to the node. */
  | { type: 'sendDrain' }
  /** Send `Undrain` to the node (only one that offers the `undrain` feature): it may take jobs again. */
  | { type: 'sendUndrain' }
  /** Send `Configure` with the node's new heartbeat interval. */
  | { type: 'sendConfigure'; heartbeatIntervalMs: number };

export interface NodeContext {
  liveness: Liveness;
  holdings: JobHoldings;
  registerTimeoutMs: number;
  nodeId: string | undefined;
  registration: Registration | undefined;
  reportedStatus: NodeStatus;
  max: Resources;
  /** False from the moment the connection is gone: the node takes no job, and waits to resume or expire. */
  connected: boolean;
  error: MusterError | undefined;
  endReason: NodeEndReason | undefined;
  /** An operator asked a draining node to take jobs again; it is ready once it reports so. */
  undrainRequested: boolean;
}

export interface NodeInput {
  /** The machine's time; pass the same object as the actor's `clock` option. */
  clock: NodeClock;
  /** Where the jobs the node holds are kept (the job coordinator). */
  holdings: JobHoldings;
  heartbeatIntervalMs: number;
  missedHeartbeats: number;
  registerTimeoutMs: number;
}

export type NodeEvent =
  | { type: 'RegisterNode'; message: EnvelopeOf<'RegisterNode'> }
  | { type: 'Heartbeat'; message: EnvelopeOf<'Heartbeat'> }
  | { type: 'Deregister'; message: EnvelopeOf<'Deregister'> }
  | { type: 'job.message'; message: JobMessage }
  /** A framing, decoding or validation error on the connection. */
  | { type: 'frame.error'; error: MusterError }
  /** The answer to an emitted `authenticate`. */
  | { type: 'auth.done'; registration: Registration }
  | { type: 'auth.failed'; error: unknown }
  /** The node's holdings changed (job-coordinator.ts keeps them): re-decide ready or busy. */
  | { type: 'job.assigned'; jobId: string }
  | { type: 'job.ended'; jobId: string }
  | { type: 'drain' }
  /** An operator returns a draining node to service (`POST /v1/nodes/{id}/undrain`). */
  | { type: 'undrain' }
  /**
   * The plane gives the node a new heartbeat interval: its liveness window follows it. With
   * `announce` the node is sent `Configure`; without, it already knows (its `RegisterAck` said so).
   */
  | { type: 'configure'; heartbeatIntervalMs: number; announce: boolean }
  | { type: 'connection.closed' }
  /** A newer connection registered this node (PROTOCOL.md 4.7). */
  | { type: 'replaced' }
  | { type: 'shutdown' }
  /** Carrying out one of the machine's effects failed: the node ends, answered `internal`. */
  | { type: 'effect.failed'; error: unknown }
  /** Internal: the node's room may have changed (ready ⇄ busy). */
  | { type: 'capacity' };

export interface NodeOutput {
  nodeId: string | undefined;
  reason: NodeEndReason;
}

/**
 * A heartbeat that changes nothing but liveness: from this node, with the status it already
 * holds. The machine's online `Heartbeat` handling takes no action for it, first of all.
 */
function steadyHeartbeat(context: NodeContext, message: EnvelopeOf<'Heartbeat'>): boolean {
  return message.data.node_id === context.nodeId && message.data.status === context.reportedStatus;
}

/** What a replaced session's connection is closed with (PROTOCOL.md 4.7); read-only, so one serves all. */
const SESSION_REPLACED = new MusterError('session_replaced', 'a newer connection registered this node');

export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    events: {} as NodeEvent,
    input: {} as NodeInput,
    output: {} as NodeOutput,
    emitted: {} as NodeEmitted,
  },
  actions: {
    acknowledgeRegistration: emit(({ context }) => ({ type: 'acknowledgeRegistration' as const, registration: context.registration! })),
    replyError: emit((_, params: { error: MusterError }) => ({ type: 'replyError' as const, error: params.error })),
    closeConnection: emit((_, params: { error: MusterError | undefined }) => ({ type: 'closeConnection' as const, error: params.error })),
    handleJobMessage: emit((_, params: { message: JobMessage }) => ({ type: 'handleJobMessage' as const, message: params.message })),
    sendDrain: emit({ type: 'sendDrain' }),
    sendUndrain: emit({ type: 'sendUndrain' }),
    // Liveness is a mutable record (frames stamp it without a transition); the interval is its part.
    reconfigure: ({ context, event }) => {
      if (event.type === 'configure') context.liveness.setInterval(event.heartbeatIntervalMs);
    },
    sendConfigure: emit(({ context }) => ({ type: 'sendConfigure' as const, heartbeatIntervalMs: context.liveness.intervalMs })),
    expire: assign({ endReason: 'expired' }),
    takeRegistration: assign(({ event }) => {
      const { registration } = event as Extract<NodeEvent, { type: 'auth.done' }>;
      return { nodeId: registration.nodeId, registration, max: registration.capabilities.max_resources };
    }),
    disconnect: assign({ connected: false }),
    recordStatus: assign({
      reportedStatus: ({ context, event }) => (event.type === 'Heartbeat' ? event.message.data.status : context.reportedStatus),
    }),
  },
  guards: {
    hasRoom: ({ context }) =>
      context.connected && context.reportedStatus !== 'Busy' && hasRoom(context.max, context.holdings.reservedOn(context.nodeId!)),
    /** The room an authenticated node has as it comes online: a resumed one may hold jobs already. */
    roomOnArrival: ({ context, event }) =>
      event.type === 'auth.done' &&
      context.reportedStatus !== 'Busy' &&
      hasRoom(event.registration.capabilities.max_resources, context.holdings.reservedOn(event.registration.nodeId)),
    steadyHeartbeat: ({ context, event }) => event.type === 'Heartbeat' && steadyHeartbeat(context, event.message),
    /** A reported status that turns ready into busy or back. */
    changesRoom: ({ context, event }) =>
      event.type === 'Heartbeat' && (event.message.data.status === 'Busy') !== (context.reportedStatus === 'Busy'),
    reportsDraining: ({ event }) => event.type === 'Heartbeat' && event.message.data.status === 'Draining',
    /** After an undrain, the first heartbeat that no longer says `Draining`. */
    backFromDraining: ({ context, event }) =>
      context.undrainRequested && event.type === 'Heartbeat' && event.message.data.status !== 'Draining',
    /** `Undrain` is a Muster extension: sent only to a node that offers it in `capabilities.features`. */
    offersUndrain: ({ context }) => offersUndrain(context),
    silent: ({ context }) => context.liveness.expired(),
    changesInterval: ({ context, event }) => event.type === 'configure' && event.heartbeatIntervalMs !== context.liveness.intervalMs,
    announce: ({ event }) => event.type === 'configure' && event.announce,
    isFatal: ({ event }) => event.type === 'frame.error' && event.error.fatal,
    isUnknownType: ({ event }) => event.type === 'frame.error' && event.error.code === 'unknown_type',
    foreignNodeId: ({ context, event }) => {
      const claimed = claimedNodeId(event);
      return claimed !== undefined && claimed !== context.nodeId;
    },
  },
  delays: {
    registerTimeout: ({ context }) => context.registerTimeoutMs,
    // The moment the node would expire if it stays silent; one timer per node, re-armed rarely.
    livenessCheck: ({ context }) => context.liveness.untilExpiry(),
  },
}).createMachine({
  id: 'node',
  context: ({ input }) => ({
    liveness: new Liveness(input.clock, input.heartbeatIntervalMs, input.missedHeartbeats),
    holdings: input.holdings,
    registerTimeoutMs: input.registerTimeoutMs,
    nodeId: undefined,
    registration: undefined,
    reportedStatus: 'Ready',
    max: NO_RESOURCES,
    connected: true,
    error: undefined,
    endReason: undefined,
    undrainRequested: false,
  }),
  initial: 'registering',
  on: {
    shutdown: { target: '.dead', actions: assign({ endReason: 'shutdown' }) },
    // Fatal: the connection closes after it, and `fatal` says what the sender does.
    'effect.failed': {
      target: '.dead',
      actions: assign({ endReason: 'failed', error: () => new MusterError('internal', 'internal error', { fatal: true }) }),
    },
  },
  states: {
    registering: {
      initial: 'waiting',
      on: {
        'connection.closed': { target: 'dead', actions: assign({ endReason: 'disconnected', connected: false }) },
        'frame.error': [
          { guard: 'isFatal', target: 'dead', actions: assign({ endReason: 'rejected', error: ({ event }) => event.error }) },
          // Any other type before RegisterNode, known or not, is `not_registered` (PROTOCOL.md 4.1).
          { guard: 'isUnknownType', target: 'dead', actions: assign(notRegistered) },
          { actions: { type: 'replyError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
      states: {
        waiting: {
          // The node's delay only (PROTOCOL.md 4.1): the timer stops once its RegisterNode is in,
          // however long the plane then takes to authenticate it.
          after: {
            registerTimeout: {
              target: '#node.dead',
              actions: assign({
                endReason: 'rejected',
                error: () => new MusterError('register_timeout', 'no RegisterNode in time'),
              }),
            },
          },
          on: {
            RegisterNode: {
              target: 'authenticating',
              actions: emit(({ event }) => ({ type: 'authenticate' as const, message: event.message })),
            },
            Heartbeat: { target: '#node.dead', actions: assign(notRegistered) },
            Deregister: { target: '#node.dead', actions: assign(notRegistered) },
            'job.message': { target: '#node.dead', actions: assign(notRegistered) },
          },
        },
        authenticating: {
          on: {
            // Straight into ready or busy (a resumed node may hold jobs already): one microstep,
            // where entering `online` and raising `capacity` there took two for every registration.
            'auth.done': [
              { guard: 'roomOnArrival', target: '#node.online.ready', actions: 'takeRegistration' },
              { target: '#node.online.busy', actions: 'takeRegistration' },
            ],
            'auth.failed': {
              target: '#node.dead',
              actions: assign({ endReason: 'rejected', error: ({ event }) => toFatal(event.error) }),
            },
            // Frames sent before the RegisterAck are a protocol violation by the node.
            Heartbeat: { target: '#node.dead', actions: assign(notRegistered) },
            'job.message': { target: '#node.dead', actions: assign(notRegistered) },
            RegisterNode: { target: '#node.dead', actions: assign(notRegistered) },
          },
        },
      },
    },
    online: {
      // `auth.done` chose ready or busy already; the effect runs after the transition, when the
      // registrar adopts the node's jobs (an end among them re-decides, as `job.ended` does).
      entry: 'acknowledgeRegistration',
      initial: 'ready',
      on: {
        RegisterNode: {
          actions: { type: 'replyError', params: () => ({ error: new MusterError('invalid_message', 'already registered', { field: 'type' }) }) },
        },
        // Targetless where nothing changes: no state is re-entered and no timer touched.
        Heartbeat: [
          { guard: 'steadyHeartbeat' },
          { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
          { guard: 'reportsDraining', target: '.draining', actions: 'recordStatus' },
          { guard: 'changesRoom', actions: ['recordStatus', raise({ type: 'capacity' })] },
          { actions: 'recordStatus' },
        ],
        'job.message': [
          { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
          { actions: { type: 'handleJobMessage', params: ({ event }) => ({ message: event.message }) } },
        ],
        // No timer is touched: a longer window lets the armed check fire early and re-arm; a
        // shorter one keeps the old deadline, for which the check is armed already.
        configure: [
          { guard: not('changesInterval') },
          { guard: 'announce', actions: ['reconfigure', 'sendConfigure'] },
          { actions: 'reconfigure' },
        ],
        // Ready or busy is re-decided in those two states themselves (no raised `capacity`): an
        // assignment can only take the room, an end can only give it back.
        'job.assigned': {},
        'job.ended': {},
        drain: { target: '.draining', actions: [assign({ undrainRequested: false }), 'sendDrain'] },
        Deregister: [
          { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
          { target: '#node.dead', actions: assign({ endReason: 'deregistered' }) },
        ],
        'frame.error': [
          // A fatal error ends the connection, not the node: it may reconnect and resume.
          { guard: 'isFatal', actions: { type: 'closeConnection', params: ({ event }) => ({ error: event.error }) } },
          { actions: { type: 'replyError', params: ({ event }) => ({ error: event.error }) } },
        ],
        // Shown at once, and no room for a job; the node lives on until it resumes or expires.
        // Busy or draining it stays so (ready turns busy in its own transition, below).
        'connection.closed': { actions: 'disconnect' },
        // One error value for every replaced session: in a reconnect storm each of thousands of
        // old sessions would capture a stack for an error its closed connection never sends.
        replaced: { target: '#node.dead', actions: assign({ endReason: 'replaced', error: SESSION_REPLACED }) },
      },
      // Each state arms one liveness timer for when the node would expire; when it fires
      // and the node has spoken since, the state re-enters and the timer re-arms.
      states: {
        ready: {
          on: {
            capacity: { guard: not('hasRoom'), target: 'busy' },
            'job.assigned': { guard: not('hasRoom'), target: 'busy' },
            // No room without a connection: busy at once (one microstep, not a raised `capacity`).
            'connection.closed': { target: 'busy', actions: 'disconnect' },
          },
          after: { livenessCheck: [{ guard: 'silent', target: '#node.dead', actions: 'expire' }, { target: 'ready', reenter: true }] },
        },
        busy: {
          on: { capacity: { guard: 'hasRoom', target: 'ready' }, 'job.ended': { guard: 'hasRoom', target: 'ready' } },
          after: { livenessCheck: [{ guard: 'silent', target: '#node.dead', actions: 'expire' }, { target: 'busy', reenter: true }] },
        },
        draining: {
          on: {
            // The node leaves draining when it says so, not when asked: until then it refuses jobs.
            undrain: { guard: 'offersUndrain', actions: [assign({ undrainRequested: true }), 'sendUndrain'] },
            Heartbeat: [
              { guard: 'steadyHeartbeat' },
              { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
              {
                guard: 'backFromDraining',
                target: 'ready',
                actions: ['recordStatus', assign({ undrainRequested: false }), raise({ type: 'capacity' })],
              },
              { actions: 'recordStatus' },
            ],
          },
          after: { livenessCheck: [{ guard: 'silent', target: '#node.dead', actions: 'expire' }, { target: 'draining', reenter: true }] },
        },
      },
    },
    dead: {
      type: 'final',
      entry: { type: 'closeConnection', params: ({ context }) => ({ error: context.error }) },
    },
  },
  output: ({ context }) => ({ nodeId: context.nodeId, reason: context.endReason ?? 'expired' }),
});

export type NodeSnapshot = SnapshotFrom<typeof nodeMachine>;

/**
 * True when the machine would take no action for this heartbeat (`steadyHeartbeat`, the
 * first of its online transitions): the session need not deliver it, only stamp liveness.
 */
export function skipsActor(snapshot: NodeSnapshot, message: EnvelopeOf<'Heartbeat'>): boolean {
  return isOnline(snapshot) && steadyHeartbeat(snapshot.context, message);
}

/**
 * True when the machine would only hand this job message on (its online `job.message`
 * handling for a message from this node: `handleJobMessage`, no state change, no timer): the
 * session then hands it to the supervisor itself, without a snapshot. A job costs two such
 * messages (JobAccepted, JobResult); the machine's transitions for them stay the definition.
 */
export function passesJobMessage(snapshot: NodeSnapshot, message: JobMessage): boolean {
  if (!isOnline(snapshot)) return false;
  const claimed = claimedNodeId({ type: 'job.message', message });
  return claimed === undefined || claimed === snapshot.context.nodeId;
}

/** The protocol's node state (PROTOCOL.md section 7) from a snapshot; runs per frame, so no `matches()`. */
export function nodeStateOf(snapshot: NodeSnapshot): NodeState {
  if (snapshot.status !== 'active') return 'dead';
  const value: unknown = snapshot.value;
  if (value === 'dead') return 'dead';
  if (typeof value === 'object' && value !== null && 'online' in value) return value.online as NodeState;
  return 'registering';
}

/** The feature a node lists in `capabilities.features` to say it understands `Undrain`. */
export const UNDRAIN_FEATURE = 'undrain';

/** Whether an operator can return this node to service from draining (its agent understands `Undrain`). */
export function offersUndrain(context: Pick<NodeContext, 'registration'>): boolean {
  return context.registration?.capabilities.features.includes(UNDRAIN_FEATURE) ?? false;
}

function isOnline(snapshot: NodeSnapshot): boolean {
  const value: unknown = snapshot.value;
  return snapshot.status === 'active' && typeof value === 'object' && value !== null && 'online' in value;
}

/** The node id a message claims to come from; the connection's own id when it claims none. */
function claimedNodeId(event: NodeEvent): string | undefined {
  if (event.type === 'Heartbeat' || event.type === 'Deregister') return event.message.data.node_id;
  if (event.type === 'job.message' && event.message.type === 'JobResult') return event.message.data.node_id;
  return undefined;
}

function notRegistered(): Partial<NodeContext> {
  return { endReason: 'rejected', error: new MusterError('not_registered', 'the first message must be RegisterNode') };
}

function wrongNodeId(): MusterError {
  return new MusterError('invalid_message', 'node_id is not this connection\'s node', { field: 'data.node_id' });
}

function toFatal(err: unknown): MusterError {
  return err instanceof MusterError ? err : new MusterError('internal', 'registration failed', { cause: err });
}
