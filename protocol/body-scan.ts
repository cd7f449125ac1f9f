// Walks a body's structure without decoding it, to refuse an abusive frame before it costs
// decoding time (issue 8 item 8): a body over its type's size (message-limits.ts), holding more
// items than its type may have, or nested too deep is `invalid_message` (field `data`), and a
// body that is not a map at all is `malformed_frame`, as the validator would say after decoding.
// The walk builds no decoded value: in MessagePack strings are skipped by their length, in JSON by a
// native search for the closing quote, so its cost is a few operations per item. A body that
// turns out truncated or ill-formed is left to the decoder, which says `malformed_frame`.
import { CODEC_JSON, type Codec } from './codec.js';
import { MusterError } from './errors.js';
import { bodyLimitOf, MAX_DEPTH, type BodyLimit } from './message-limits.js';

/** Longest `type` or `id` value read from a body; longer ones are not envelopes' (`id` ≤ 64). */
const MAX_NAME_BYTES = 64;

/** What the walk learnt of the envelope: the top-level `type` and `id`, where they are plain strings. */
export interface BodyShape {
  type: string | undefined;
  id: string | undefined;
}

/** Throws a MusterError for a body that must not be decoded; otherwise says what it saw of the envelope. */
export function scanBody(codec: Codec, body: Uint8Array, batches = false): BodyShape {
  const scan = new Budget(body.length, batches);
  if (codec === CODEC_JSON) scanJson(body, scan);
  else scanMsgpack(body, scan);
  scan.finish();
  return { type: scan.type, id: scan.id };
}

/** The items and depth seen so far against the limit of the type, once the type is known. */
class Budget {
  type: string | undefined;
  private replyTo: string | undefined;
  private items = 0;
  private limit: BodyLimit = bodyLimitOf(undefined);
  /**
   * A body over its type's size: refused once its `id` is read (the answer carries it), or when
   * the type's items run out or the walk ends, whichever comes first.
   */
  private oversize: string | undefined;

  constructor(
    private readonly bytes: number,
    /** Whether a Batch is read as one (its session turned `batch` on) or as any unknown type. */
    private readonly batches: boolean,
  ) {}

  get id(): string | undefined {
    return this.replyTo;
  }

  foundType(type: string): void {
    this.type = type;
    this.limit = bodyLimitOf(type, this.batches);
    const max = this.limit.bytes;
    if (max !== undefined && this.bytes > max) this.oversize = `a ${type} body of ${this.bytes} bytes is over the ${max} bytes a ${type} may have`;
    this.add(0);
  }

  foundId(id: string): void {
    this.replyTo = id;
    this.finish();
  }

  add(items: number): void {
    this.items += items;
    if (this.items > this.limit.items) {
      this.refuse(this.oversize ?? `the body holds more than the ${this.limit.items} items (map entries, array elements) a ${this.type ?? 'message'} may have`);
    }
  }

  /** The walk is over (or the id is known): a body over its size is refused now. */
  finish(): void {
    if (this.oversize !== undefined) this.refuse(this.oversize);
  }

  enter(depth: number): void {
    if (depth > MAX_DEPTH) this.refuse(`the body nests deeper than ${MAX_DEPTH} levels`);
  }

  private refuse(message: string): never {
    throw new MusterError('invalid_message', message, { field: 'data', replyTo: this.id });
  }
}

// ---- JSON ----

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function scanJson(body: Uint8Array, budget: Budget): void {
  let i = 0;
  while (i < body.length && isJsonSpace(body[i]!)) i++;
  if (body[i] !== 0x7b) throw new MusterError('malformed_frame', 'envelope is not a map');
  let depth = 0;
  // Top level only: whether the next string is a key, and which key the value at hand is of.
  let expectKey = false;
  let key: 'type' | 'id' | undefined;
  while (i < body.length) {
    const b = body[i]!;
    if (b === QUOTE) {
      const end = closingQuote(body, i + 1);
      if (end < 0) return;
      if (depth === 1) {
        if (expectKey) key = keyOf(body, i + 1, end);
        else if (key !== undefined) noteValue(budget, key, plainText(body, i + 1, end));
        expectKey = false;
      }
      i = end + 1;
      continue;
    }
    switch (b) {
      case 0x7b: // {
      case 0x5b: // [
        depth++;
        // An empty map or array costs nothing to decode: only those with items count and nest.
        if (!closesAtOnce(body, i + 1)) {
          budget.enter(depth);
          budget.add(1);
        }
        if (depth === 1) expectKey = b === 0x7b;
        break;
      case 0x7d: // }
      case 0x5d: // ]
        depth--;
        if (depth <= 0) return;
        break;
      case 0x2c: // ,
        budget.add(1);
        if (depth === 1) {
          expectKey = true;
          key = undefined;
        }
        break;
      case 0x3a: // :
        if (depth === 1) expectKey = false;
        break;
      default:
        break;
    }
    i++;
  }
}

function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** True when the map or array opened just before `from` is empty. */
function closesAtOnce(body: Uint8Array, from: number): boolean {
  let j = from;
  while (j < body.length && isJsonSpace(body[j]!)) j++;
  return body[j] === 0x7d || body[j] === 0x5d;
}

/** Index of the quote that ends a string starting at `from`, or -1. */
function closingQuote(body: Uint8Array, from: number): number {
  let at = body.indexOf(QUOTE, from);
  while (at >= 0) {
    let backslashes = 0;
    for (let j = at - 1; j >= from && body[j] === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return at;
    at = body.indexOf(QUOTE, at + 1);
  }
  return -1;
}

function keyOf(body: Uint8Array, from: number, to: number): 'type' | 'id' | undefined {
  const text = plainText(body, from, to);
  return text === 'type' || text === 'id' ? text : undefined;
}

/** Short ASCII text without escapes, as bytes stand; undefined for anything else. */
function plainText(body: Uint8Array, from: number, to: number): string | undefined {
  if (to - from > MAX_NAME_BYTES) return undefined;
  let text = '';
  for (let j = from; j < to; j++) {
    const b = body[j]!;
    if (b >= 0x80 || b === BACKSLASH) return undefined;
    text += String.fromCharCode(b);
  }
  return text;
}

function noteValue(budget: Budget, key: 'type' | 'id', value: string | undefined): void {
  if (value === undefined) return;
  if (key === 'id') budget.foundId(value);
  else budget.foundType(value);
}

// ---- MessagePack ----

/** A MessagePack value's header: the bytes it spans before any children, and how many children follow. */
interface Head {
  /** Bytes of the header and of any payload that is not a child (a string's text). */
  size: number;
  /** Child values: 2 per map entry, 1 per array element. */
  children: number;
  /** Map entries or array elements, for the budget. */
  items: number;
  /** For a string: where its text starts. */
  text?: number;
}

function scanMsgpack(body: Uint8Array, budget: Budget): void {
  const first = body[0];
  const isMap = first !== undefined && ((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf);
  if (!isMap) throw new MusterError('malformed_frame', 'envelope is not a map');
  // Children still to read, per open container; the root map is at index 0.
  const open: number[] = [];
  // Values read at the top level: even ones are keys, odd ones values.
  let topValues = 0;
  let key: 'type' | 'id' | undefined;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let i = 0;
  for (;;) {
    while (open.length > 0 && open[open.length - 1] === 0) open.pop();
    if (i > 0 && open.length === 0) return;
    const head = headAt(body, view, i);
    if (head === undefined || i + head.size > body.length) return;
    if (open.length === 1) {
      const text = head.text === undefined ? undefined : plainText(body, head.text, i + head.size);
      if (topValues % 2 === 0) key = text === 'type' || text === 'id' ? text : undefined;
      else if (key !== undefined) noteValue(budget, key, text);
      topValues++;
    }
    if (open.length > 0) open[open.length - 1]!--;
    i += head.size;
    // An empty map or array costs nothing to decode: only those with items count and nest.
    if (head.items > 0) {
      budget.enter(open.length + 1);
      budget.add(head.items);
      open.push(head.children);
    }
  }
}

function headAt(body: Uint8Array, view: DataView, i: number): Head | undefined {
  const b = body[i];
  if (b === undefined) return undefined;
  if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) return scalar(1);
  if (b <= 0x8f) return container(1, b & 0x0f, 2);
  if (b <= 0x9f) return container(1, b & 0x0f, 1);
  if (b <= 0xbf) return { size: 1 + (b & 0x1f), children: 0, items: 0, text: i + 1 };
  const has = (n: number): boolean => i + 1 + n <= body.length;
  const u8 = (): number => body[i + 1]!;
  const u16 = (): number => view.getUint16(i + 1);
  const u32 = (): number => view.getUint32(i + 1);
  switch (b) {
    case 0xc4: return has(1) ? scalar(2 + u8()) : undefined; // bin 8
    case 0xc5: return has(2) ? scalar(3 + u16()) : undefined; // bin 16
    case 0xc6: return has(4) ? scalar(5 + u32()) : undefined; // bin 32
    case 0xc7: return has(1) ? scalar(3 + u8()) : undefined; // ext 8
    case 0xc8: return has(2) ? scalar(4 + u16()) : undefined; // ext 16
    case 0xc9: return has(4) ? scalar(6 + u32()) : undefined; // ext 32
    case 0xca: return scalar(5); // float 32
    case 0xcb: return scalar(9); // float 64
    case 0xcc: return scalar(2);
    case 0xcd: return scalar(3);
    case 0xce: return scalar(5);
    case 0xcf: return scalar(9);
    case 0xd0: return scalar(2);
    case 0xd1: return scalar(3);
    case 0xd2: return scalar(5);
    case 0xd3: return scalar(9);
    case 0xd4: return scalar(3); // fixext 1
    case 0xd5: return scalar(4);
    case 0xd6: return scalar(6);
    case 0xd7: return scalar(10);
    case 0xd8: return scalar(18);
    case 0xd9: return has(1) ? { size: 2 + u8(), children: 0, items: 0, text: i + 2 } : undefined; // str 8
    case 0xda: return has(2) ? { size: 3 + u16(), children: 0, items: 0, text: i + 3 } : undefined;
    case 0xdb: return has(4) ? { size: 5 + u32(), children: 0, items: 0, text: i + 5 } : undefined;
    case 0xdc: return has(2) ? container(3, u16(), 1) : undefined; // array 16
    case 0xdd: return has(4) ? container(5, u32(), 1) : undefined;
    case 0xde: return has(2) ? container(3, u16(), 2) : undefined; // map 16
    case 0xdf: return has(4) ? container(5, u32(), 2) : undefined;
    default: return undefined; // 0xc1: never used; the decoder refuses it
  }
}

function scalar(size: number): Head {
  return { size, children: 0, items: 0 };
}

function container(size: number, items: number, perItem: number): Head {
  return { size, children: items * perItem, items };
}
