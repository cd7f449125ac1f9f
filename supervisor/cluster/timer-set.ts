// The timers of one cluster part, kept so that closing it cancels every one still pending: a
// lease or its peer watch that is closed must not renew, poll or fence afterwards.
export class TimerSet {
  readonly #timers = new Set<NodeJS.Timeout>();

  /** Calls `fn` after `delayMs`, unless cancelled (or the set cleared) first. */
  after(delayMs: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, delayMs);
    this.#timers.add(timer);
    return timer;
  }

  cancel(timer: NodeJS.Timeout | undefined): void {
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#timers.delete(timer);
  }

  /** Cancels every pending timer. */
  clear(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}
