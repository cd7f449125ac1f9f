// A connection that stops reading its peer for a while (a node over its rates, see
// supervisor/security/node-rate-limit.ts): its next bytes wait in the kernel and then in the
// sender, instead of costing the plane a read. One timer per connection; a newer pause
// replaces the older one, and a close resumes at once so that the close can be read.
export class ReadPause {
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param pause stops the transport's reading (out of flowing mode)
   * @param resume starts it again; called only while paused, so it may check the transport is still open
   */
  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  /** Stops reading for `ms`, or for `ms` from now when already paused. */
  for(ms: number): void {
    this.pause();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.end(), ms);
    this.timer.unref();
  }

  /** Reads again now, if paused. */
  end(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.resume();
  }
}
