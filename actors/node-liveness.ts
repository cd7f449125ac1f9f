// When a node was last heard from, and whether it is still alive: the node machine's one
// record of liveness (PROTOCOL.md 4.2 and 4.8). The machine creates it from its input and
// reads it in its guards and delays; the session only reports that a frame arrived
// (`heard`), which costs no transition, so a fleet's steady heartbeats stay cheap.
// The interval is the node's current one (the plane's heartbeat governor changes it with
// `Configure`); a change never brings the node's deadline forward (`setInterval`).

/** Time for the node machine: `now` for liveness, the timers for its delayed transitions (xstate's `Clock`). */
export interface NodeClock {
  now(): number;
  setTimeout(fn: (...args: unknown[]) => void, timeout: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The process's clock, looked up on each call so that test fake timers apply to it. */
export const systemClock: NodeClock = {
  now: () => Date.now(),
  setTimeout: (fn, timeout) => setTimeout(fn, timeout),
  clearTimeout: (id) => clearTimeout(id as NodeJS.Timeout),
};

export class Liveness {
  private lastSeen: number;
  /**
   * After a shorter interval, the deadline the longer one gave (ms on the clock): the node is
   * not expired before it, so that it has time to hear the change and comply. 0: none.
   */
  private graceUntil = 0;

  constructor(
    private readonly clock: NodeClock,
    private heartbeatIntervalMs: number,
    private readonly missedHeartbeats: number,
  ) {
    this.lastSeen = clock.now();
  }

  /** The node's current heartbeat interval. */
  get intervalMs(): number {
    return this.heartbeatIntervalMs;
  }

  /**
   * The node was given a new interval. Longer: the window grows at once, so a node still on
   * its way from the old interval is not expired by the old, shorter window. Shorter: the old
   * deadline still holds (grace, as PROTOCOL.md 4.8 asks for a change of owner), which leaves
   * a healthy node at least `missedHeartbeats` old intervals to hear the change and send at the
   * new one; after it, the new window applies.
   */
  setInterval(intervalMs: number): void {
    if (intervalMs < this.heartbeatIntervalMs) this.graceUntil = Math.max(this.graceUntil, this.deadline());
    this.heartbeatIntervalMs = intervalMs;
  }

  /** A frame arrived from the node: any frame counts. */
  heard(): void {
    this.lastSeen = this.clock.now();
  }

  /** When the node was last heard from (ms since the epoch, on the machine's clock). */
  get lastHeard(): number {
    return this.lastSeen;
  }

  /** Silent for its missed heartbeats plus one interval of grace (PROTOCOL.md 4.8). */
  expired(): boolean {
    return this.clock.now() >= this.deadline();
  }

  /** How long until the node would expire if it stays silent from now on (at least 1 ms). */
  untilExpiry(): number {
    return Math.max(1, this.deadline() - this.clock.now());
  }

  /** When the node expires if it stays silent: its window after the last frame, or the grace of a shortened interval. */
  private deadline(): number {
    return Math.max(this.lastSeen + this.heartbeatIntervalMs * (this.missedHeartbeats + 1), this.graceUntil);
  }
}
