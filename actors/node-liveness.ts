// When a node was last heard from, and whether it is still alive: the node machine's one
// record of liveness (PROTOCOL.md 4.2 and 4.8). The machine creates it from its input and
// reads it in its guards and delays; the session only reports that a frame arrived
// (`heard`), which costs no transition, so a fleet's steady heartbeats stay cheap.

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

  constructor(
    private readonly clock: NodeClock,
    private readonly heartbeatIntervalMs: number,
    private readonly missedHeartbeats: number,
  ) {
    this.lastSeen = clock.now();
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
    return this.clock.now() - this.lastSeen >= this.windowMs();
  }

  /** How long until the node would expire if it stays silent from now on (at least 1 ms). */
  untilExpiry(): number {
    return Math.max(1, this.windowMs() - (this.clock.now() - this.lastSeen));
  }

  private windowMs(): number {
    return this.heartbeatIntervalMs * (this.missedHeartbeats + 1);
  }
}
