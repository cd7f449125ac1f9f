// What every node session of the plane is given (node-session.ts `SessionHost`): the timing
// of its actor, where its jobs are held, registration (the registrar), job messages (the job
// coordinator), the node's state changes (the bus, the scheduler), and the security gate's
// hooks (rates, audit). One object for all sessions.
import type { Logger } from 'pino';
import { toMusterError } from '../../protocol/errors.js';
import type { Bus } from '../bus/bus.js';
import type { Config } from '../config.js';
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import type { PlaneSecurity } from '../security/plane-security.js';
import type { WireMeter } from '../../observability/plane-metrics.js';
import type { Registrar } from './registrar.js';
import type { SessionHost } from './node-session.js';
import type { MessageTap } from './message-tap.js';
import type { ArtifactIntake } from '../artifacts/artifact-intake.js';
import type { NodeInspector } from './node-inspector.js';

export interface PlaneSessionHostOptions {
  controlPlaneId: string;
  logger: Logger;
  config: Pick<Config, 'heartbeatIntervalMs' | 'missedHeartbeats' | 'registerTimeoutMs' | 'maxFrameBytes'>;
  registrar: Registrar;
  coordinator: JobCoordinator;
  bus: Bus;
  security: PlaneSecurity;
  /** Where every session counts its frames and messages. */
  meter: WireMeter;
  /** Asks the scheduler for a pass: a node became ready. */
  wakeScheduler(): void;
  /** Embedders' handlers of node messages. */
  tap: MessageTap;
  /** Takes artifact uploads; undefined: the plane keeps none (and never turns `artifacts` on). */
  artifacts?: ArtifactIntake;
  /** `--inspect`: every node actor is fed to the Stately inspector; undefined: none is inspected. */
  inspector?: NodeInspector;
}

export function planeSessionHost(o: PlaneSessionHostOptions): SessionHost {
  const { gate } = o.security;
  return {
    logger: o.logger,
    meter: o.meter,
    timing: {
      heartbeatIntervalMs: o.config.heartbeatIntervalMs,
      missedHeartbeats: o.config.missedHeartbeats,
      registerTimeoutMs: o.config.registerTimeoutMs,
    },
    holdings: o.coordinator,
    maxFrameBytes: o.config.maxFrameBytes,
    rates: o.security.nodeRates,
    ...(o.inspector === undefined ? {} : { inspect: o.inspector.observer }),
    authenticate: (session, message) => o.registrar.authenticate(session, message),
    registered: (session, registration) => o.registrar.registered(session, registration),
    ended: (session, output) => o.registrar.ended(session, output),
    observed: (session, message) => {
      if (!o.tap.active) return;
      const nodeId = session.nodeId;
      if (nodeId !== undefined) o.tap.show(message, { nodeId });
    },
    jobMessage: (session, message) => {
      const nodeId = session.nodeId;
      if (nodeId === undefined) return;
      o.coordinator.handle(session, nodeId, message).catch((err: unknown) => {
        session.logger.error({ err, node_id: nodeId, type: message.type }, 'job message failed');
        session.sendError(toMusterError(err), message.id);
      });
    },
    ...(o.artifacts === undefined
      ? {}
      : {
          artifactMessage: (session, message, refund) => {
            const nodeId = session.nodeId;
            if (nodeId !== undefined) o.artifacts?.handle(session, nodeId, message, refund);
          },
        }),
    stateChanged: (session, state) => {
      const nodeId = session.nodeId;
      if (nodeId !== undefined) o.bus.publish({ kind: 'node', node_id: nodeId, state, owner: o.controlPlaneId });
      if (state === 'ready') o.wakeScheduler();
    },
    connectionClosed: (session, reason) => gate.closed(session.connection, session.nodeId, reason),
    rateLimited: (session, verdict, dropped) => {
      gate.rateLimited(session.connection, session.nodeId, dropped);
      return verdict === 'abuse' ? gate.abusive(session.connection, session.nodeId, dropped) : undefined;
    },
  };
}
