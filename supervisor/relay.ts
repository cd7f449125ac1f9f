// A call made before its receiver exists, connected once it does. The composition root
// builds parts that need each other (the job coordinator wakes the scheduler, which places
// jobs through the coordinator; a revocation closes sessions that are tracked with tokens
// verified against the revocations) in one order, so that no closure reaches for a part
// that is not built yet: the first part gets a relay, the later part is connected to it.
export class Relay<T = void> {
  private receiver: ((value: T) => void) | undefined;

  /** Passes `value` on; dropped while nothing is connected (nothing can be waiting for it then). */
  send(value: T): void {
    this.receiver?.(value);
  }

  /** Connects the one receiver. */
  connect(receiver: (value: T) => void): void {
    if (this.receiver !== undefined) throw new Error('relay already connected');
    this.receiver = receiver;
  }
}
