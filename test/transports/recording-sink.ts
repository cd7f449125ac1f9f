// A FrameSink that records what a connection reports and lets a test wait for what it
// expects: shared by every transport's tests, so each tests its transport, not its own sink.
import type { MusterError } from '../../protocol/errors.js';
import type { FrameSink } from '../../transports/transport.js';

export class RecordingSink implements FrameSink {
  readonly frames: { codecByte: number; body: Buffer }[] = [];
  readonly errors: MusterError[] = [];
  readonly closes: (Error | undefined)[] = [];
  private waiters: (() => void)[] = [];

  frame(codecByte: number, body: Uint8Array): void {
    this.frames.push({ codecByte, body: Buffer.from(body) }); // the body may be a view of a socket chunk
    this.wake();
  }

  error(err: MusterError): void {
    this.errors.push(err);
    this.wake();
  }

  closed(err?: Error): void {
    this.closes.push(err);
    this.wake();
  }

  /** Resolves once `predicate` holds; the test timeout bounds the wait. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
