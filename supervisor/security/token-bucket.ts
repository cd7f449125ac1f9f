// A token bucket: `rate` tokens a second, at most `burst` saved up. No timers: the refill is
// computed when tokens are taken, from a monotonic clock in milliseconds (`performance.now()`,
// so a wall-clock step cannot hand out or swallow tokens), and a take allocates nothing, so
// one can sit on the per-frame path.

export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Tokens added per millisecond. */
  private readonly perMs: number;

  /**
   * @param rate tokens per second (> 0)
   * @param burst the most tokens held, and the start value (>= 1)
   * @param now the monotonic clock in ms at creation; default `performance.now()`
   */
  constructor(
    readonly rate: number,
    readonly burst: number,
    now: number = performance.now(),
  ) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`token bucket rate must be a positive number, got ${rate}`);
    if (!(burst >= 1) || !Number.isFinite(burst)) throw new Error(`token bucket burst must be at least 1, got ${burst}`);
    this.perMs = rate / 1000;
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `amount` tokens if there are that many; false (and nothing taken) otherwise. */
  take(amount = 1, now: number = performance.now()): boolean {
    this.refill(now);
    if (this.tokens < amount) return false;
    this.tokens -= amount;
    return true;
  }

  /**
   * Takes `amount` whatever is left, into debt: for a cost known only after the work was done
   * (decoding time), which the next `take` then waits out.
   */
  charge(amount: number, now: number = performance.now()): void {
    this.refill(now);
    this.tokens -= amount;
  }

  /** Gives `amount` back (at most up to `burst`): a cost that turned out not to be one. */
  refund(amount: number, now: number = performance.now()): void {
    this.refill(now);
    this.tokens = Math.min(this.burst, this.tokens + amount);
  }

  /** Tokens available at `now` (fractional), without taking any. */
  available(now: number = performance.now()): number {
    this.refill(now);
    return this.tokens;
  }

  /** Milliseconds until `amount` tokens (or, in debt, any) are there again; 0 when they are now. */
  msUntil(amount: number, now: number = performance.now()): number {
    this.refill(now);
    const needed = Math.min(amount, this.burst) - this.tokens;
    return needed <= 0 ? 0 : needed / this.perMs;
  }

  /** Milliseconds an empty bucket needs to fill up again: how long its state matters. */
  get fillMs(): number {
    return this.burst / this.perMs;
  }

  private refill(now: number): void {
    // A clock that did not move (or an older `now` passed in) adds nothing.
    const elapsed = now - this.last;
    if (elapsed <= 0) return;
    this.last = now;
    const tokens = this.tokens + elapsed * this.perMs;
    this.tokens = tokens > this.burst ? this.burst : tokens;
  }
}
