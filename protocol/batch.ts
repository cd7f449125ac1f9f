// The `batch` wire feature (PROTOCOL.md section 8): several envelopes in one frame, either way.
// Reading: a Batch's envelopes come out one at a time, in order, each read by the receiver's own
// reader for a frame, so that each is validated (and answered) as if it had come alone; a
// Batch inside the Batch refuses the whole of it, before any is handled. Writing: envelopes
// already encoded are joined into one Batch body without encoding them again.
import { CODEC_JSON, encodeBody, type Codec } from './codec.js';
import { MusterError, toMusterError } from './errors.js';
import { bodyLimitOf, MAX_DEPTH } from './message-limits.js';
import type { BatchMessage, NodeMessage } from './messages.js';
import { isPlainMap, validateNodeMessage } from './validator.js';

/** True for a decoded body (or envelope) whose `type` is `Batch`. */
export function isBatchEnvelope(value: unknown): boolean {
  return isPlainMap(value) && value.type === 'Batch';
}

/** One envelope of a Batch: read, or refused with the error its own frame would have had. */
export type BatchItem<M> = { message: M } | { error: MusterError; envelope: unknown };

/**
 * The envelopes of a validated Batch, each through `read`, lazily and in order: the caller
 * stops where a fatal error (or its own rate limit) says so. A Batch inside the Batch yields
 * one error answering the outer Batch's `id`, and nothing else.
 */
export function* readBatch<M>(batch: BatchMessage, read: (envelope: unknown) => M): Generator<BatchItem<M>> {
  const envelopes = batch.data.messages;
  const nested = envelopes.findIndex(isBatchEnvelope);
  if (nested >= 0) {
    const error = new MusterError('invalid_message', 'a Batch may not hold a Batch', { field: `data.messages.${nested}`, replyTo: batch.id });
    yield { error, envelope: batch };
    return;
  }
  for (const envelope of envelopes) {
    let message: M;
    try {
      message = read(envelope);
    } catch (err) {
      yield { error: toMusterError(err), envelope };
      continue;
    }
    yield { message };
  }
}

/**
 * A node's envelope out of a Batch, read as the plane reads a frame (message-reader.ts): held
 * to its type's size and items (message-limits.ts), then validated. The walk of the whole body
 * bounded the Batch; this bounds each of its envelopes as the walk bounds one alone.
 */
export function readBatchedNodeMessage(codec: Codec, envelope: unknown, turnedOff?: (type: string) => boolean): NodeMessage {
  checkLimits(codec, envelope);
  return validateNodeMessage(envelope, turnedOff);
}

function checkLimits(codec: Codec, envelope: unknown): void {
  if (!isPlainMap(envelope)) return; // the validator says what it is
  const type = typeof envelope.type === 'string' ? envelope.type : undefined;
  const replyTo = typeof envelope.id === 'string' && envelope.id.length <= 64 ? envelope.id : undefined;
  const limit = bodyLimitOf(type);
  const refuse = (message: string): MusterError => new MusterError('invalid_message', message, { field: 'data', replyTo });
  const shape = shapeOf(envelope, limit.items);
  if (shape === undefined) throw refuse(`the message nests deeper than ${MAX_DEPTH} levels`);
  if (shape.items > limit.items) throw refuse(`the message holds more than the ${limit.items} items (map entries, array elements) a ${type ?? 'message'} may have`);
  // Only the small types have a size. Encoded, a value takes at most 6 bytes a character (a JSON
  // escape), 24 a number or other scalar, 4 an item: within the limit so, it needs no encoding.
  if (limit.bytes === undefined || 6 * shape.chars + 24 * shape.scalars + 4 * shape.items + 16 <= limit.bytes) return;
  const bytes = encodeBody(codec, envelope).length;
  if (bytes > limit.bytes) throw refuse(`a ${type} of ${bytes} bytes is over the ${limit.bytes} bytes a ${type} may have`);
}

interface Shape {
  /** Map entries and array elements at every depth (counted up to just past the limit). */
  items: number;
  /** Characters of keys and strings. */
  chars: number;
  /** Numbers, booleans and nulls. */
  scalars: number;
}

/** What an envelope holds, walked up to just past `maxItems`; undefined past MAX_DEPTH. */
function shapeOf(root: unknown, maxItems: number): Shape | undefined {
  const shape: Shape = { items: 0, chars: 0, scalars: 0 };
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0 && shape.items <= maxItems) {
    const [value, depth] = stack.pop()!;
    if (typeof value === 'string') {
      shape.chars += value.length;
      continue;
    }
    const isArray = Array.isArray(value);
    if (!isArray && !isPlainMap(value)) {
      shape.scalars++;
      continue;
    }
    const children: unknown[] = isArray ? (value as unknown[]) : Object.values(value);
    if (children.length === 0) continue;
    if (depth > MAX_DEPTH) return undefined;
    shape.items += children.length;
    if (!isArray) for (const key of Object.keys(value)) shape.chars += key.length;
    for (const child of children) stack.push([child, depth + 1]);
  }
  return shape;
}

const utf8 = new TextEncoder();

/**
 * One Batch body holding `envelopes`, each already encoded in `codec`: the envelope around them
 * is encoded once, with an empty list whose last byte (`]` then `}}` in JSON, the array header
 * in MessagePack) is where they go.
 */
export function batchBody(codec: Codec, envelopes: readonly Uint8Array[], id?: string): Uint8Array {
  const outer: Record<string, unknown> = { type: 'Batch' };
  if (id !== undefined) outer.id = id;
  outer.data = { messages: [] };
  const empty = encodeBody(codec, outer);
  let head: Uint8Array;
  let tail: Uint8Array;
  let separator: Uint8Array | undefined;
  if (codec === CODEC_JSON) {
    // `...[]}}`: the list is closed by the last three bytes.
    head = empty.subarray(0, empty.length - 3);
    tail = empty.subarray(empty.length - 3);
    separator = utf8.encode(',');
  } else {
    // The empty list is the last byte (fixarray 0x90): its header becomes the count's.
    head = Uint8Array.from([...empty.subarray(0, empty.length - 1), ...arrayHeader(envelopes.length)]);
    tail = new Uint8Array(0);
  }
  const size = head.length + tail.length + envelopes.reduce((n, e) => n + e.length, 0) + (separator === undefined ? 0 : Math.max(0, envelopes.length - 1));
  const body = new Uint8Array(size);
  let at = 0;
  const put = (bytes: Uint8Array): void => {
    body.set(bytes, at);
    at += bytes.length;
  };
  put(head);
  envelopes.forEach((e, i) => {
    if (i > 0 && separator !== undefined) put(separator);
    put(e);
  });
  put(tail);
  return body;
}

/** The bytes a Batch body adds around its envelopes, at most (for packing them within a frame). */
export function batchOverhead(envelopes: number, id?: string): number {
  return 48 + (id?.length ?? 0) + envelopes;
}

function arrayHeader(n: number): number[] {
  return n <= 15 ? [0x90 | n] : [0xdc, (n >> 8) & 0xff, n & 0xff];
}
