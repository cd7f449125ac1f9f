// The node actor's machine: the one place that decides a node's state.
//
//   registering ──RegisterNode──► authenticating ──ok──► online: ready ⇄ busy → draining ──► dead
//
// It is driven only by decoded messages, by what the supervisor tells it about jobs
// (assigned / ended), and by its own timers. Side effects (sending frames, closing the
// connection, handing job messages over) go through the `NodePort` in its input, so the
// machine knows no sockets or stores, and one machine definition serves every node (a
// per-node `provide()` would copy the machine: ~26 KiB per node).
//
// Built for fleets of thousands of nodes per plane:
// - Ready or busy is re-decided only on the events that can change it (a job assigned or
//   ended, a change of reported status), which raise `capacity`: no eventless transition
//   is evaluated after every frame.
// - When the node was last heard from is a shared `Liveness` cell that the session stamps
//   on every frame without a transition; a heartbeat that changes nothing else need not
//   be an event at all (the session skips it), so the common frame costs no snapshot.
// - Liveness is one delayed transition per node, armed for the moment the node would
//   expire; when it fires early (the node spoke since) it re-arms for the new moment.
import { assign, fromPromise, not, raise, setup } from 'xstate';
import { MusterError } from '../protocol/errors.js';
import type { Capabilities, EnvelopeOf, NodeInfo, NodeStatus } from '../protocol/messages.js';
import { hasRoom, NO_RESOURCES, sumReserved, type Resources } from './node-capacity.js';

/** One job attempt the node holds, with what it reserves. */
/** The five states of the design card, as the API and the bus name them. */
export type NodeState = 'registering' | 'ready' | 'busy' | 'draining' | 'dead';

export interface JobSlot {
  attempt: number;
  reserved: Resources;
}

/** What authentication decides about a `RegisterNode`. */
export interface Registration {
  nodeId: string;
  resumed: boolean;
  info: NodeInfo;
  capabilities: Capabilities;
  /** Jobs the node keeps across a resume. */
  jobs: Record<string, JobSlot>;
}

export type NodeEndReason = 'expired' | 'deregistered' | 'replaced' | 'shutdown' | 'rejected' | 'disconnected';

type JobMessage = EnvelopeOf<'JobAccepted'> | EnvelopeOf<'JobRejected'> | EnvelopeOf<'LogChunk'> | EnvelopeOf<'JobResult'>;

/** What the machine asks of the world; the supervisor's NodeSession implements it. */
export interface NodePort {
  /** Verifies the token, decides the node id; rejects with a MusterError to refuse. */
  authenticate(message: EnvelopeOf<'RegisterNode'>): Promise<Registration>;
  /** The node is online: send `RegisterAck`. */
  acknowledgeRegistration(registration: Registration): void;
  /** Answers a non-fatal error; the connection stays. */
  replyError(error: MusterError): void;
  /** Sends a fatal error (when given) and closes the connection. */
  closeConnection(error: MusterError | undefined): void;
  /** Hands a job protocol message to the supervisor's job handling. */
  handleJobMessage(message: JobMessage): void;
  /** Sends `Drain` to the node. */
  sendDrain(): void;
  /** Sends `Undrain` to the node: it may take jobs again. */
  sendUndrain(): void;
}

/** When the node was last heard from; any frame counts (PROTOCOL.md 4.2). Stamped by the session. */
export interface Liveness {
  lastSeen: number;
}

export interface NodeContext {
  port: NodePort;
  liveness: Liveness;
  heartbeatIntervalMs: number;
  missedHeartbeats: number;
  registerTimeoutMs: number;
  nodeId: string | undefined;
  registration: Registration | undefined;
  reportedStatus: NodeStatus;
  max: Resources;
  jobs: Record<string, JobSlot>;
  error: MusterError | undefined;
  endReason: NodeEndReason | undefined;
  /** An operator asked a draining node to take jobs again; it is ready once it reports so. */
  undrainRequested: boolean;
}

export interface NodeInput {
  port: NodePort;
  liveness: Liveness;
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
  | { type: 'job.assigned'; jobId: string; slot: JobSlot }
  | { type: 'job.ended'; jobId: string }
  | { type: 'drain' }
  /** An operator returns a draining node to service (`POST /v1/nodes/{id}/undrain`). */
  | { type: 'undrain' }
  | { type: 'connection.closed' }
  /** A newer connection registered this node (PROTOCOL.md 4.7). */
  | { type: 'replaced' }
  | { type: 'shutdown' }
  /** Internal: the node's room may have changed (ready ⇄ busy). */
  | { type: 'capacity' };

export interface NodeOutput {
  nodeId: string | undefined;
  reason: NodeEndReason;
  jobs: Record<string, JobSlot>;
}

function silentFor(context: NodeContext): number {
  return Date.now() - context.liveness.lastSeen;
}

/** Missed heartbeats, plus one interval of grace (PROTOCOL.md 4.8). */
function livenessWindow(context: NodeContext): number {
  return context.heartbeatIntervalMs * (context.missedHeartbeats + 1);
}

export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    events: {} as NodeEvent,
    input: {} as NodeInput,
    output: {} as NodeOutput,
  },
  actors: {
    authenticate: fromPromise<Registration, { port: NodePort; message: EnvelopeOf<'RegisterNode'> }>(({ input }) =>
      input.port.authenticate(input.message),
    ),
  },
  actions: {
    acknowledgeRegistration: ({ context }) => {
      if (context.registration !== undefined) context.port.acknowledgeRegistration(context.registration);
    },
    replyError: ({ context }, params: { error: MusterError }) => context.port.replyError(params.error),
    closeConnection: ({ context }, params: { error: MusterError | undefined }) => context.port.closeConnection(params.error),
    handleJobMessage: ({ context }, params: { message: JobMessage }) => context.port.handleJobMessage(params.message),
    sendDrain: ({ context }) => context.port.sendDrain(),
    sendUndrain: ({ context }) => context.port.sendUndrain(),
    expire: assign({ endReason: 'expired' }),
    recordStatus: assign({
      reportedStatus: ({ context, event }) => (event.type === 'Heartbeat' ? event.message.data.status : context.reportedStatus),
    }),
    addJob: assign({
      jobs: ({ context, event }) => (event.type === 'job.assigned' ? { ...context.jobs, [event.jobId]: event.slot } : context.jobs),
    }),
    removeJob: assign({
      jobs: ({ context, event }) => (event.type === 'job.ended' ? withoutJob(context.jobs, event.jobId) : context.jobs),
    }),
  },
  guards: {
    hasRoom: ({ context }) => context.reportedStatus !== 'Busy' && hasRoom(context.max, reservedBy(context.jobs)),
    /** A reported status that turns ready into busy or back. */
    changesRoom: ({ context, event }) =>
      event.type === 'Heartbeat' && (event.message.data.status === 'Busy') !== (context.reportedStatus === 'Busy'),
    reportsDraining: ({ event }) => event.type === 'Heartbeat' && event.message.data.status === 'Draining',
    /** After an undrain, the first heartbeat that no longer says `Draining`. */
    backFromDraining: ({ context, event }) =>
      context.undrainRequested && event.type === 'Heartbeat' && event.message.data.status !== 'Draining',
    silent: ({ context }) => silentFor(context) >= livenessWindow(context),
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
    livenessCheck: ({ context }) => Math.max(1, livenessWindow(context) - silentFor(context)),
  },
}).createMachine({
  id: 'node',
  context: ({ input }) => ({
    port: input.port,
    liveness: input.liveness,
    heartbeatIntervalMs: input.heartbeatIntervalMs,
    missedHeartbeats: input.missedHeartbeats,
    registerTimeoutMs: input.registerTimeoutMs,
    nodeId: undefined,
    registration: undefined,
    reportedStatus: 'Ready',
    max: NO_RESOURCES,
    jobs: {},
    error: undefined,
    endReason: undefined,
    undrainRequested: false,
  }),
  initial: 'registering',
  on: {
    shutdown: { target: '.dead', actions: assign({ endReason: 'shutdown' }) },
  },
  states: {
    registering: {
      initial: 'waiting',
      after: {
        registerTimeout: {
          target: 'dead',
          actions: assign({
            endReason: 'rejected',
            error: () => new MusterError('register_timeout', 'no RegisterNode in time'),
          }),
        },
      },
      on: {
        'connection.closed': { target: 'dead', actions: assign({ endReason: 'disconnected' }) },
        'frame.error': [
          { guard: 'isFatal', target: 'dead', actions: assign({ endReason: 'rejected', error: ({ event }) => event.error }) },
          // Any other type before RegisterNode, known or not, is `not_registered` (PROTOCOL.md 4.1).
          { guard: 'isUnknownType', target: 'dead', actions: assign(notRegistered) },
          { actions: { type: 'replyError', params: ({ event }) => ({ error: event.error }) } },
        ],
      },
      states: {
        waiting: {
          on: {
            RegisterNode: 'authenticating',
            Heartbeat: { target: '#node.dead', actions: assign(notRegistered) },
            Deregister: { target: '#node.dead', actions: assign(notRegistered) },
            'job.message': { target: '#node.dead', actions: assign(notRegistered) },
          },
        },
        authenticating: {
          invoke: {
            src: 'authenticate',
            input: ({ context, event }) => ({
              port: context.port,
              message: (event as Extract<NodeEvent, { type: 'RegisterNode' }>).message,
            }),
            onDone: {
              target: '#node.online',
              actions: assign(({ event }) => ({
                nodeId: event.output.nodeId,
                registration: event.output,
                max: event.output.capabilities.max_resources,
                jobs: event.output.jobs,
              })),
            },
            onError: {
              target: '#node.dead',
              actions: assign({ endReason: 'rejected', error: ({ event }) => toFatal(event.error) }),
            },
          },
          on: {
            // Frames sent before the RegisterAck are a protocol violation by the node.
            Heartbeat: { target: '#node.dead', actions: assign(notRegistered) },
            'job.message': { target: '#node.dead', actions: assign(notRegistered) },
            RegisterNode: { target: '#node.dead', actions: assign(notRegistered) },
          },
        },
      },
    },
    online: {
      entry: 'acknowledgeRegistration',
      initial: 'ready',
      on: {
        RegisterNode: {
          actions: { type: 'replyError', params: () => ({ error: new MusterError('invalid_message', 'already registered', { field: 'type' }) }) },
        },
        // Targetless where nothing changes: no state is re-entered and no timer touched.
        Heartbeat: [
          { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
          { guard: 'reportsDraining', target: '.draining', actions: 'recordStatus' },
          { guard: 'changesRoom', actions: ['recordStatus', raise({ type: 'capacity' })] },
          { actions: 'recordStatus' },
        ],
        'job.message': [
          { guard: 'foreignNodeId', actions: { type: 'replyError', params: () => ({ error: wrongNodeId() }) } },
          { actions: { type: 'handleJobMessage', params: ({ event }) => ({ message: event.message }) } },
        ],
        'job.assigned': { actions: ['addJob', raise({ type: 'capacity' })] },
        'job.ended': { actions: ['removeJob', raise({ type: 'capacity' })] },
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
        replaced: {
          target: '#node.dead',
          actions: assign({ endReason: 'replaced', error: () => new MusterError('session_replaced', 'a newer connection registered this node') }),
        },
      },
      // Each state arms one liveness timer for when the node would expire; when it fires
      // and the node has spoken since, the state re-enters and the timer re-arms.
      states: {
        ready: {
          on: { capacity: { guard: not('hasRoom'), target: 'busy' } },
          after: { livenessCheck: [{ guard: 'silent', target: '#node.dead', actions: 'expire' }, { target: 'ready', reenter: true }] },
        },
        busy: {
          on: { capacity: { guard: 'hasRoom', target: 'ready' } },
          after: { livenessCheck: [{ guard: 'silent', target: '#node.dead', actions: 'expire' }, { target: 'busy', reenter: true }] },
        },
        draining: {
          on: {
            // The node leaves draining when it says so, not when asked: until then it refuses jobs.
            undrain: { actions: [assign({ undrainRequested: true }), 'sendUndrain'] },
            Heartbeat: [
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
  output: ({ context }) => ({ nodeId: context.nodeId, reason: context.endReason ?? 'expired', jobs: context.jobs }),
});

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

export function reservedBy(jobs: Record<string, JobSlot>): Resources {
  return sumReserved(Object.values(jobs).map((j) => j.reserved));
}

function withoutJob(jobs: Record<string, JobSlot>, jobId: string): Record<string, JobSlot> {
  const { [jobId]: _gone, ...rest } = jobs;
  return rest;
}
