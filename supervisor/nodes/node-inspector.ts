// `--inspect ws://...`: the node actors fed to a Stately WebSocket inspector (`@statelyai/inspect`'s
// createInspector over inspector-socket.ts, which sends what its createWebSocketInspector would,
// but stops for good), for those who watch them in Stately's tools.
// Only a plane started with it pays: without it no actor is given an `inspect` observer, and
// xstate then builds no inspection event at all (an observer on every actor cost the Ready/Busy
// benchmark 13 %). With it, each session's actor passes its inspection events to `observe`,
// which keeps three kinds (the actor, each event it is sent, each snapshot) and drops the
// microsteps and actions before they cost a timer or a serialisation each (the library's own
// `inspector.inspect` defers every one to a `setTimeout` and serialises the whole snapshot).
// What leaves is made safe here, field by field: the events and the context carry the node's
// registration token, its messages and the coordinator's holdings of every node, so only named
// fields are copied (message types and ids, job ids, error codes, the node's registration info).
import { createInspector } from '@statelyai/inspect';
import type { Logger } from 'pino';
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import type { NodeContext, Registration } from '../../actors/node-machine.js';
import { InspectorSocket } from './inspector-socket.js';

/** What a session gives its actor as xstate's `inspect` option, and how the plane stops it. */
export interface NodeInspector {
  /** The `inspect` observer of every node actor. */
  readonly observer: Observer<InspectionEvent>;
  /** Closes the connection to the inspector (at the plane's shutdown). */
  stop(): void;
}

type Inspector = ReturnType<typeof createInspector<InspectorSocket>>;

/** Connects to the inspector at `url` (it reconnects by itself); events wait in a bounded queue until it answers. */
export function startNodeInspector(url: string, logger: Pick<Logger, 'info'>): NodeInspector {
  const inspector = createInspector(new InspectorSocket(url));
  inspector.start();
  logger.info({ url }, 'feeding node actors to the inspector');
  return {
    observer: { next: (event) => observe(inspector, event) },
    stop: () => inspector.stop(),
  };
}

function observe(inspector: Inspector, event: InspectionEvent): void {
  const ref = event.actorRef as AnyActorRef;
  switch (event.type) {
    case '@xstate.actor':
      // Told while the actor is being built, before it has a snapshot: its first comes on start.
      inspector.actor(ref, { status: 'active' });
      return;
    case '@xstate.event':
      inspector.event(ref, safeEvent(event.event), event.sourceRef === undefined ? undefined : { source: event.sourceRef as AnyActorRef });
      return;
    case '@xstate.snapshot': {
      const snapshot = event.snapshot as { status: 'active' | 'done' | 'error' | 'stopped'; value?: unknown; context?: NodeContext; output?: unknown };
      inspector.snapshot(ref, { status: snapshot.status, value: snapshot.value, context: safeContext(snapshot.context), output: snapshot.output }, { event: safeEvent(event.event) });
      return;
    }
    default:
      // Microsteps, transitions and actions: not what the inspector draws a node by.
      return;
  }
}

/** An event's type and its harmless fields; a message by its type and id, an error by its code, never a payload or a token. */
export function safeEvent(event: { type: string; [key: string]: unknown }): { type: string; [key: string]: unknown } {
  const out: { type: string; [key: string]: unknown } = { type: event.type };
  for (const key of ['jobId', 'heartbeatIntervalMs', 'announce'] as const) if (event[key] !== undefined) out[key] = event[key];
  const message = event.message as { type?: unknown; id?: unknown; data?: { job_id?: unknown } } | undefined;
  if (message !== undefined) {
    out.message = { type: message.type, id: message.id };
    if (typeof message.data?.job_id === 'string') (out.message as Record<string, unknown>).job_id = message.data.job_id;
  }
  if (event.error !== undefined) out.error = { code: errorCode(event.error) };
  if (event.registration !== undefined) out.registration = safeRegistration(event.registration as Registration);
  return out;
}

/** The node's context without its clock, its liveness record or the coordinator's holdings of every node. */
export function safeContext(context: NodeContext | undefined): Record<string, unknown> | undefined {
  if (context === undefined) return undefined;
  return {
    nodeId: context.nodeId,
    connected: context.connected,
    reportedStatus: context.reportedStatus,
    max: context.max,
    undrainRequested: context.undrainRequested,
    endReason: context.endReason,
    error: context.error === undefined ? undefined : { code: context.error.code },
    registration: context.registration === undefined ? undefined : safeRegistration(context.registration),
    lastHeard: context.liveness.lastHeard,
  };
}

function safeRegistration(r: Registration): Record<string, unknown> {
  return { nodeId: r.nodeId, resumed: r.resumed, info: r.info, capabilities: r.capabilities, protocolVersion: r.protocolVersion, wireFeatures: r.wireFeatures };
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'internal';
}
