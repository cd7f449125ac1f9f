// JetStream publishes whose acknowledgements come back on one subscription of the connection (a
// wildcard inbox, each publish's reply subject naming it), instead of one nats.js request each.
// Why: nats.js 3.3.1 settles every answered request by also rejecting its promise with a new
// RequestError("cancelled") (request.js, RequestOne.cancel after resolve), an Error built with
// its stack and thrown away, 5-6% of a replica's CPU under load; and js.publish copies its
// options and headers and starts a timer per call. The job store's KV writes (a few per job)
// go this way; the answers are the ones js.publish gives: the acknowledged sequence, a
// JetStreamApiError for an API error (a lost compare-and-set), TimeoutError when no answer came
// within `timeoutMs`, a no-responders RequestError when JetStream is not there, and
// ClosedConnectionError once the connection closed.
import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import { createInbox, errors, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/nats-core';

interface Pending {
  resolve: (seq: number) => void;
  reject: (err: Error) => void;
  /** performance.now() ms after which the publish has timed out. */
  deadline: number;
  subject: string;
}

/** The ack JetStream sends for a publish. */
interface PubAck {
  stream?: string;
  seq?: number;
  error?: ApiError;
}

/** Coarseness of the timeouts: one timer for every publish, checked this often (at most). */
const SWEEP_MS = 250;

const EXPECTED_LAST_SUBJECT_SEQUENCE = 'Nats-Expected-Last-Subject-Sequence';

export class JetStreamAcks {
  readonly #prefix: string;
  readonly #sub: Subscription;
  /** In publish order, so in deadline order (one timeout for all): the sweep stops at the first not yet due. */
  readonly #pending = new Map<string, Pending>();
  readonly #sweep: NodeJS.Timeout;
  #next = 0;
  #closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    this.#prefix = createInbox();
    this.#sub = nc.subscribe(`${this.#prefix}.*`, { callback: (err, msg) => (err === null ? this.#answer(msg) : this.#failAll(err)) });
    this.#sweep = setInterval(() => this.#expire(), Math.max(1, Math.min(SWEEP_MS, timeoutMs / 4)));
    this.#sweep.unref();
    void nc.closed().then(() => this.close());
  }

  /**
   * Publishes `data` on `subject` (a stream's), with `expectedLastSubjectSequence` as its
   * compare-and-set when given (0: the subject must be empty, a KV create); resolves with the
   * message's stream sequence (its KV revision) once JetStream acknowledged it.
   */
  publish(subject: string, data: Uint8Array, expectedLastSubjectSequence?: number): Promise<number> {
    if (this.#closed) return Promise.reject(new errors.ClosedConnectionError());
    const token = (this.#next++).toString(36);
    return new Promise<number>((resolve, reject) => {
      const options: { reply: string; headers?: ReturnType<typeof headers> } = { reply: `${this.#prefix}.${token}` };
      if (expectedLastSubjectSequence !== undefined) {
        const h = headers();
        h.set(EXPECTED_LAST_SUBJECT_SEQUENCE, String(expectedLastSubjectSequence));
        options.headers = h;
      }
      try {
        this.nc.publish(subject, data, options);
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.#pending.set(token, { resolve, reject, deadline: performance.now() + this.timeoutMs, subject });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#sub.unsubscribe();
    this.#failAll(new errors.ClosedConnectionError());
  }

  #answer(msg: Msg): void {
    const token = msg.subject.slice(this.#prefix.length + 1);
    const pending = this.#pending.get(token);
    if (pending === undefined) return; // timed out already
    this.#pending.delete(token);
    if (msg.headers?.code === 503) {
      pending.reject(new errors.RequestError('no responders', { cause: new errors.NoRespondersError(pending.subject) }));
      return;
    }
    let ack: PubAck;
    try {
      ack = JSON.parse(msg.string()) as PubAck;
    } catch (err) {
      pending.reject(err as Error);
      return;
    }
    if (ack.error !== undefined) pending.reject(new JetStreamApiError(ack.error));
    else if (typeof ack.seq !== 'number' || !ack.stream) pending.reject(new Error('invalid JetStream ack response'));
    else pending.resolve(ack.seq);
  }

  #expire(): void {
    const now = performance.now();
    for (const [token, pending] of this.#pending) {
      if (pending.deadline > now) return;
      this.#pending.delete(token);
      pending.reject(new errors.TimeoutError());
    }
  }

  #failAll(err: Error): void {
    const all = [...this.#pending.values()];
    this.#pending.clear();
    for (const pending of all) pending.reject(err);
  }
}
