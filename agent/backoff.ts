// Reconnect delays for the agent: exponential backoff with full jitter
// (delay = random(0, min(cap, base * 2^attempt))), so that a fleet of nodes that lost
// the same control plane does not come back in lockstep.
import { AGENT_DEFAULTS } from './agent-options.js';

export interface BackoffOptions {
  /** Ceiling of the first delay, in ms. Default 250. */
  baseMs?: number;
  /** No delay is ever longer than this, in ms. Default 30 000. */
  capMs?: number;
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number;
}

export class Backoff {
  private readonly baseMs: number;
  private readonly capMs: number;
  private readonly random: () => number;
  private failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? AGENT_DEFAULTS.backoffBaseMs;
    this.capMs = options.capMs ?? AGENT_DEFAULTS.backoffCapMs;
    this.random = options.random ?? Math.random;
  }

  /** Delays handed out since the last reset. */
  get attempts(): number {
    return this.failures;
  }

  /** The upper bound of the next delay. */
  get ceilingMs(): number {
    // Past 2^30 the product is far over any sane cap; stop growing the exponent there.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 30));
  }

  /**
   * The next delay in ms, and one step further up the curve. `limitMs` lowers the ceiling
   * of this one delay (the curve still advances): a caller that must be back within a
   * deadline keeps its jitter but never waits past it.
   */
  next(limitMs = Infinity): number {
    const delay = Math.floor(this.random() * Math.max(1, Math.min(this.ceilingMs, limitMs)));
    this.failures += 1;
    return delay;
  }

  /** Back to the first step; called after a successful registration. */
  reset(): void {
    this.failures = 0;
  }
}
