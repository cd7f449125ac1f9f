// Adaptive heartbeats (issue 9 item 3), as Nomad's `max_heartbeats_per_second`: the plane keeps
// the fleet's heartbeats a second under `maxHeartbeatsPerSecond` by giving every node one
// interval, the fleet interval, raised with `Configure` as the fleet grows and lowered as it
// shrinks, between `heartbeatIntervalMs` and `maxHeartbeatIntervalMs`.
//
// Cost does not grow with the fleet where nothing changes: the interval is recomputed only when
// a node registers or ends (O(1)), and changes only by a step of at least HYSTERESIS (25%), so a
// fleet that grows from 1 to N nodes sees O(log N) changes. A change is sent to the nodes in
// batches of CONFIGURE_BATCH, one batch per event-loop turn (setImmediate), so that 10,000
// Configure frames do not hold the loop in one turn: heartbeats and jobs are read between them.
// Each node's actor decides for itself what the change means for its liveness (node-machine.ts).
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { NodeSession } from './node-session.js';

/** The least relative change of the fleet interval; also the headroom left when it is raised. */
export const HYSTERESIS = 1.25;
/** Configure frames sent in one event-loop turn. */
export const CONFIGURE_BATCH = 500;

export type HeartbeatPolicy = Pick<Config, 'heartbeatIntervalMs' | 'maxHeartbeatIntervalMs' | 'maxHeartbeatsPerSecond'>;

/**
 * The fleet interval for `nodes` nodes, given the current one: unchanged unless the fleet is
 * over the rate (raised, with HYSTERESIS of headroom) or the interval is HYSTERESIS above what
 * the fleet now needs with its headroom (lowered). Always within the policy's bounds.
 */
export function nextIntervalMs(policy: HeartbeatPolicy, nodes: number, currentMs: number): number {
  const base = policy.heartbeatIntervalMs;
  if (policy.maxHeartbeatsPerSecond <= 0) return base;
  const max = Math.max(base, policy.maxHeartbeatIntervalMs);
  // The shortest interval that keeps the fleet's rate at or under the limit.
  const needed = (nodes * 1000) / policy.maxHeartbeatsPerSecond;
  const withHeadroom = Math.min(max, Math.max(base, Math.ceil(needed * HYSTERESIS)));
  if (currentMs < needed && currentMs < max) return withHeadroom;
  if (withHeadroom * HYSTERESIS <= currentMs) return withHeadroom;
  return Math.min(max, Math.max(base, currentMs));
}

/** The part of a session the governor talks to: its actor. */
export type GovernedSession = Pick<NodeSession, 'actor'>;

export interface HeartbeatGovernorOptions {
  policy: HeartbeatPolicy;
  /** How many nodes the plane holds (the registry's bound sessions). */
  nodes(): number;
  /** Those sessions, for sending a change. */
  sessions(): Iterable<GovernedSession>;
  logger: Logger;
  /** Runs the next batch of sends on a later turn; setImmediate unless a test says otherwise. */
  defer?(fn: () => void): void;
}

export class HeartbeatGovernor {
  private current: number;
  /** The sessions still to be told of the current interval, and how far the sweep is. */
  private sweep: GovernedSession[] = [];
  private position = 0;
  private sweeping = false;
  /** For tests and stats: interval changes, and `configure` events handed to node actors. */
  readonly counters = { changes: 0, told: 0 };

  constructor(private readonly o: HeartbeatGovernorOptions) {
    this.current = o.policy.heartbeatIntervalMs;
  }

  /** The fleet interval: what a registering node is given in its `RegisterAck`. */
  get intervalMs(): number {
    return this.current;
  }

  /** A node registered or ended: recompute the interval, and send it to every node when it changes. */
  fleetChanged(): void {
    const next = nextIntervalMs(this.o.policy, this.o.nodes(), this.current);
    if (next === this.current) return;
    this.o.logger.info({ nodes: this.o.nodes(), from_ms: this.current, to_ms: next }, 'fleet heartbeat interval changed');
    this.current = next;
    this.counters.changes++;
    // A change during a sweep starts it again: each actor ignores an interval it already has.
    this.sweep = Array.from(this.o.sessions());
    this.position = 0;
    if (!this.sweeping) {
      this.sweeping = true;
      this.defer(() => this.sendBatch());
    }
  }

  /** Tells one session the fleet interval; `announce: false` when its `RegisterAck` already said it. */
  tell(session: GovernedSession, announce: boolean): void {
    const snapshot = session.actor.getSnapshot();
    // Ended, or at this interval already (the common registration): no event for the actor.
    if (snapshot.status !== 'active' || snapshot.context.liveness.intervalMs === this.current) return;
    this.counters.told++;
    session.actor.send({ type: 'configure', heartbeatIntervalMs: this.current, announce });
  }

  private sendBatch(): void {
    const end = Math.min(this.sweep.length, this.position + CONFIGURE_BATCH);
    for (; this.position < end; this.position++) this.tell(this.sweep[this.position]!, true);
    if (this.position < this.sweep.length) {
      this.defer(() => this.sendBatch());
      return;
    }
    this.sweep = [];
    this.position = 0;
    this.sweeping = false;
  }

  private defer(fn: () => void): void {
    if (this.o.defer !== undefined) this.o.defer(fn);
    else setImmediate(fn);
  }
}
