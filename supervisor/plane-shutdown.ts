// Stopping the control plane, in the order that loses nothing: no new connection or job
// placement, the listeners closed, every node told `Shutdown` (it reconnects elsewhere or
// later, with `resume`) and its actor ended, then the job coordinator's timers, token
// refreshes and revocation polling, the admin API, the store, the bus, the security parts, and
// last the data directory's lock.
// Also undoes a start that failed part-way: each part closes whether or not it was reached.
import type { Logger } from 'pino';
import type { TransportServer } from '../transports/transport.js';
import type { AdminApi } from './admin/api-server.js';
import type { Bus } from './bus/bus.js';
import type { JobCoordinator } from './jobs/job-coordinator.js';
import type { NodeBreaker } from './jobs/node-breaker.js';
import type { Scheduler } from './jobs/scheduler.js';
import type { NodeIntake } from './nodes/node-intake.js';
import type { NodeSession } from './nodes/node-session.js';
import type { PlaneSecurity } from './security/plane-security.js';
import type { DataDirLock } from './store/data-dir-lock.js';
import type { Stores } from './store/open-stores.js';
import type { SessionTokens } from './tokens/session-tokens.js';
import type { TokenRegistry } from './tokens/token-registry.js';
import type { ArtifactIntake } from './artifacts/artifact-intake.js';
import type { ArtifactStore } from './artifacts/artifact-store.js';
import type { ArtifactSweeper } from './artifacts/artifact-sweeper.js';

export interface PlaneParts {
  logger: Logger;
  /** Given up last, once nothing of the plane touches the data directory any more. */
  dataDirLock: Pick<DataDirLock, 'release'>;
  /** Told to nodes in `Shutdown`. */
  shutdownGraceMs: number;
  intake: NodeIntake;
  scheduler: Scheduler;
  /** Its benches' timers end with the plane. */
  breaker: Pick<NodeBreaker, 'stop'>;
  coordinator: JobCoordinator;
  sessionTokens: SessionTokens<NodeSession>;
  tokenRegistry: TokenRegistry;
  stores: Stores;
  bus: Bus;
  security: PlaneSecurity;
  /** The sweep of abandoned uploads stops, uploads under way finish their step, then the store closes its files. */
  artifacts?: { intake: ArtifactIntake; store: ArtifactStore; sweeper: Pick<ArtifactSweeper, 'close'> };
  /**
   * A cluster replica's NATS parts: its duties for peers stop with the coordinator (before the
   * stores close), the rest closes last, its lease given up, so its nodes may be claimed at once.
   */
  cluster?: { stop(): Promise<void>; close(): Promise<void> };
}

export class PlaneShutdown {
  /** The node listeners, pushed as each opens (listenForNodes), so a failed start closes those open. */
  readonly servers: TransportServer[] = [];
  private admin: AdminApi | undefined;
  private done = false;

  constructor(private readonly p: PlaneParts) {}

  /** The admin API is listening: it closes with the plane. */
  adminStarted(admin: AdminApi): void {
    this.admin = admin;
  }

  /** Sends `Shutdown` to every node, stops listening, closes the store; a second call does nothing. */
  async run(reason: string): Promise<void> {
    if (this.done) return;
    this.done = true;
    const open = this.p.intake.stop();
    this.p.scheduler.stop();
    this.p.breaker.stop();
    await Promise.all(this.servers.map((s) => s.close()));
    for (const session of open) {
      session.send('Shutdown', { reason, grace_period_ms: this.p.shutdownGraceMs });
      session.actor.send({ type: 'shutdown' });
    }
    await Promise.all(open.map((s) => s.connection.close()));
    this.p.coordinator.close();
    await this.p.cluster?.stop();
    this.p.sessionTokens.close();
    this.p.tokenRegistry.close();
    await this.admin?.close();
    await this.p.artifacts?.sweeper.close();
    await this.p.artifacts?.intake.close();
    await this.p.artifacts?.store.close();
    await this.p.stores.close();
    await this.p.bus.close();
    await this.p.cluster?.close();
    this.p.security.close();
    this.p.dataDirLock.release();
    this.p.logger.info({ reason }, 'control plane stopped');
  }
}
