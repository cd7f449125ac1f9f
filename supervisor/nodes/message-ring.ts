// A node session's last messages in and out, for the node's page (`GET /v1/nodes/{id}`
// `recent_messages`): each one's type, direction, time, id (in) or `reply_to` (out), and size;
// never its data, which may hold a token, a secret or a job's output. Kept in preallocated
// columns written in a ring, so that noting a message (every heartbeat) allocates nothing and
// costs a few stores; the list is only built when the page asks.
import type { RecentMessage } from '../admin/wire-types.js';

/** How many of a node's last messages are kept. */
export const MESSAGES_KEPT = 20;

export class MessageRing {
  readonly #types: string[] = new Array<string>(MESSAGES_KEPT).fill('');
  readonly #refs: (string | undefined)[] = new Array<string | undefined>(MESSAGES_KEPT).fill(undefined);
  /** Two numbers a message: its time, and its bytes times two plus its direction (1: out); one buffer, as a fleet has one ring a node. */
  readonly #numbers = new Float64Array(2 * MESSAGES_KEPT);
  #next = 0;
  #count = 0;

  /** A message from the node; `at` in epoch milliseconds. */
  in(type: string, id: string | undefined, bytes: number, at: number): void {
    this.#note(type, id, bytes, at, 0);
  }

  /** A message to the node, answering `replyTo` if given. */
  out(type: string, replyTo: string | undefined, bytes: number, at: number): void {
    this.#note(type, replyTo, bytes, at, 1);
  }

  #note(type: string, ref: string | undefined, bytes: number, at: number, out: number): void {
    const i = this.#next;
    this.#types[i] = type;
    this.#refs[i] = ref;
    this.#numbers[2 * i] = at;
    this.#numbers[2 * i + 1] = bytes * 2 + out;
    this.#next = i + 1 === MESSAGES_KEPT ? 0 : i + 1;
    if (this.#count < MESSAGES_KEPT) this.#count++;
  }

  /** Oldest first. */
  list(): RecentMessage[] {
    const list: RecentMessage[] = [];
    const first = (this.#next - this.#count + MESSAGES_KEPT) % MESSAGES_KEPT;
    for (let k = 0; k < this.#count; k++) {
      const i = (first + k) % MESSAGES_KEPT;
      const sized = this.#numbers[2 * i + 1]!;
      const out = sized % 2 === 1;
      const m: RecentMessage = { direction: out ? 'out' : 'in', type: this.#types[i]!, at: new Date(this.#numbers[2 * i]!).toISOString(), bytes: Math.floor(sized / 2) };
      const ref = this.#refs[i];
      if (ref !== undefined) {
        if (out) m.reply_to = ref;
        else m.id = ref;
      }
      list.push(m);
    }
    return list;
  }
}
