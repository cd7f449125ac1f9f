// What a test's node client receives from the plane: every frame decoded and validated as a
// plane message, kept in order until the test takes it with `next`; a Batch (the `batch` wire
// feature) is taken apart into its messages, each marked with the Batch's size. Shared by the raw TCP
// client (node-client.ts) and the any-transport client (test/conformance/protocol-client.ts).
import { inflateRawSync } from 'node:zlib';
import { CODEC_JSON, CODEC_MSGPACK, DEFLATE_BIT, decodeBody, type CodecName } from '../../protocol/codec.js';
import type { PlaneMessage, PlaneMessageType } from '../../protocol/messages.js';
import { validateBatch, validatePlaneMessage } from '../../protocol/validator.js';

/** One frame from the plane, decoded and validated. */
export interface Received<T extends PlaneMessageType = PlaneMessageType> {
  /** The codec byte as on the wire. */
  codecByte: number;
  /** The codec the plane answered in. */
  codec: CodecName;
  /** The frame's size on the wire (codec byte and body, compressed or not). */
  frameBytes: number;
  message: Extract<PlaneMessage, { type: T }>;
  /** The number of messages in the Batch this one came in; undefined when it came alone. */
  batchSize?: number;
}

export class PlaneInbox {
  private readonly items: (Received | Error)[] = [];
  private readonly waiters = new Set<() => void>();
  private closed = false;

  /** A frame as it came off the connection; anything that is not a valid plane message is kept as an Error. */
  frame(codecByte: number, body: Uint8Array): void {
    const items = decodeFrame(codecByte, body);
    this.items.push(...items);
    this.wake();
  }

  /** Something wrong with what the plane sent, to fail the next `next`. */
  fail(err: Error): void {
    this.push(err);
  }

  /** The connection is closed: waits with nothing left to take fail now. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  /** Frames received and not yet taken with `next`. */
  unread(): Received[] {
    return this.items.filter((item): item is Received => !(item instanceof Error));
  }

  /**
   * The next frame from the plane, in order. With `type`, a frame of any other type fails the
   * wait (with what arrived instead), so a test cannot skip over a frame it did not expect.
   */
  async next<T extends PlaneMessageType>(type: T | undefined, timeoutMs: number): Promise<Received<T>> {
    const item = await this.take(type ?? 'a frame', timeoutMs);
    if (item instanceof Error) throw item;
    if (type !== undefined && item.message.type !== type) {
      throw new Error(`expected ${type}, got ${item.message.type} ${JSON.stringify(item.message.data)}`);
    }
    return item as unknown as Received<T>;
  }

  private push(item: Received | Error): void {
    this.items.push(item);
    this.wake();
  }

  private take(what: string, timeoutMs: number): Promise<Received | Error> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const item = this.items.shift();
        if (item !== undefined) {
          settle();
          resolve(item);
        } else if (this.closed) {
          settle();
          reject(new Error(`connection closed while waiting for ${what}`));
        }
      };
      const settle = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

function decodeFrame(codecByte: number, body: Uint8Array): (Received | Error)[] {
  // A compressed body (the `deflate` wire feature) is read as the plane meant it; whether the
  // session agreed to it is the test's to check (`codecByte`).
  const codec = codecByte & ~DEFLATE_BIT;
  if (codec !== CODEC_JSON && codec !== CODEC_MSGPACK) {
    return [new Error(`the plane sent codec byte 0x${codecByte.toString(16)}`)];
  }
  try {
    const plain = (codecByte & DEFLATE_BIT) !== 0 ? inflateRawSync(body) : Uint8Array.from(body);
    // Copied: the body may be a view of a socket chunk.
    const decoded = decodeBody(codec, plain);
    const frame = { codecByte, codec: codec === CODEC_JSON ? ('json' as const) : ('msgpack' as const), frameBytes: body.length + 1 };
    if ((decoded as { type?: unknown }).type !== 'Batch') return [{ ...frame, message: validatePlaneMessage(decoded) }];
    // Whether the session agreed to `batch` is the test's to check (`batchSize`).
    const messages = validateBatch(decoded).data.messages;
    return messages.map((inner) => ({ ...frame, message: validatePlaneMessage(inner), batchSize: messages.length }));
  } catch (err) {
    return [new Error('the plane sent a message that is not a valid plane message', { cause: err })];
  }
}
