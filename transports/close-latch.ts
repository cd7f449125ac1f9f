// How every connection ends, whatever its transport: a graceful close that is forced after
// a timeout, `closed()` resolved once the channel is gone, the first abnormal reason kept,
// and the owner's sink told exactly once.
import type { FrameSink } from './transport.js';

export class CloseLatch {
  /** The first reason the connection ended abnormally; later ones are its consequences. */
  error: Error | undefined;
  /** Resolves once the underlying channel is closed. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private timer: NodeJS.Timeout | undefined;
  private reported = false;

  constructor() {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  /** Keeps `err` as the reason, unless there is one already. */
  fail(err: Error): void {
    this.error ??= err;
  }

  /** True once a graceful close has begun. */
  get closing(): boolean {
    return this.timer !== undefined;
  }

  /** A graceful close has begun: `force` ends the channel if it is not closed within `timeoutMs`. */
  beginClose(timeoutMs: number, force: () => void): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(force, timeoutMs);
    this.timer.unref();
  }

  /** The channel is closed: no more forcing, and `done` resolves. */
  settle(): void {
    clearTimeout(this.timer);
    this.resolveDone();
  }

  /** Tells the owner the connection is closed, with the reason if abnormal; only the first call does. */
  report(sink: FrameSink): void {
    if (this.reported) return;
    this.reported = true;
    sink.closed(this.error);
  }
}
