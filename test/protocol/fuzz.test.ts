// Bad input never crashes the control plane (PROTOCOL.md section 4, rule 10): whatever bytes
// a peer sends, the receive path (frame decoder → body walk → body codec → validator) either
// yields a message or throws a MusterError with a protocol code, and always finishes; and a body
// of any shape over its type's item budget is refused by the walk, before it is decoded.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { Packr } from 'msgpackr';
import { CODEC_JSON, CODEC_MSGPACK, ENCRYPTED_BIT, encodeBody, type Codec } from '../../protocol/codec.js';
import { MusterError, isErrorCode } from '../../protocol/errors.js';
import { scanBody } from '../../protocol/body-scan.js';
import { bodyLimitOf, MAX_DEPTH } from '../../protocol/message-limits.js';
import { readNodeMessage } from '../../protocol/message-reader.js';
import { sampleMessages } from './sample-messages.js';
import { concat, splitAt } from './byte-chunks.js';

const MAX_FRAME = 4096;
/**
 * Cases per property: five properties (one at half weight) make at least 100,000 cases per
 * CI run (about 5 s here). FUZZ_RUNS_PER_PROPERTY raises it for a longer local soak.
 */
const RUNS_PER_PROPERTY = Number(process.env.FUZZ_RUNS_PER_PROPERTY ?? 23_000);
const SAMPLES = Object.values(sampleMessages());

/** The whole receive path of the control plane for one connection's bytes. */
function receive(chunks: Uint8Array[]): void {
  const decoder = new FrameDecoder(MAX_FRAME);
  const onFrame = (codecByte: number, body: Uint8Array): void => {
    try {
      readNodeMessage((codecByte & ~ENCRYPTED_BIT) as Codec, body);
    } catch (err) {
      expectProtocolError(err);
    }
  };
  try {
    for (const chunk of chunks) {
      decoder.push(chunk, onFrame);
      // Memory stays bounded: never more than one frame's worth is held, whatever arrives.
      if (decoder.bufferedBytes > MAX_FRAME + 4) throw new Error(`decoder holds ${decoder.bufferedBytes} bytes`);
    }
  } catch (err) {
    expectProtocolError(err);
  }
}

function expectProtocolError(err: unknown): void {
  if (!(err instanceof MusterError) || !isErrorCode(err.code)) {
    throw new Error(`not a MusterError: ${String(err)}`, { cause: err });
  }
}

type Mutation =
  | { kind: 'flip'; at: number; bits: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bits: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
);

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const at = m.at % Math.max(bytes.length, 1);
  switch (m.kind) {
    case 'flip': {
      const out = bytes.slice();
      if (out.length > 0) out[at] = out[at]! ^ m.bits;
      return out;
    }
    case 'set': {
      const out = bytes.slice();
      if (out.length > 0) out[at] = m.value;
      return out;
    }
    case 'insert':
      return concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
    case 'delete':
      return concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
    case 'truncate':
      return bytes.subarray(0, at);
  }
}

/** The body of a valid sample, with its length header fixed up after mutation, so the codec sees it. */
function framedBody(codecByte: number, body: Uint8Array): Uint8Array {
  return encodeFrame(codecByte, body.subarray(0, MAX_FRAME - 1));
}

const codecArb = fc.constantFrom<Codec>(CODEC_JSON, CODEC_MSGPACK);
const sampleArb = fc.constantFrom(...SAMPLES);

describe('receive path fuzz', () => {
  it('survives arbitrary bytes split arbitrarily', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        receive(splitAt(bytes, cuts));
      }),
      { numRuns: RUNS_PER_PROPERTY },
    );
  });

  it('survives well-framed garbage bodies under any codec byte', () => {
    const frameArb = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 512 }));
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 4 }), (frames) => {
        receive([concat(frames.map(([codecByte, body]) => encodeFrame(codecByte, body)))]);
      }),
      { numRuns: RUNS_PER_PROPERTY },
    );
  });

  it('survives mutated valid frames (header and body alike)', () => {
    fc.assert(
      fc.property(sampleArb, codecArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (msg, codec, mutations) => {
        const frame = encodeFrame(codec, encodeBody(codec, msg));
        receive([mutations.reduce(mutate, frame)]);
      }),
      { numRuns: RUNS_PER_PROPERTY },
    );
  });

  it('survives mutated valid bodies inside a well-formed frame', () => {
    fc.assert(
      fc.property(sampleArb, codecArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (msg, codec, mutations) => {
        const body = mutations.reduce(mutate, encodeBody(codec, msg));
        receive([framedBody(codec, body)]);
      }),
      { numRuns: RUNS_PER_PROPERTY },
    );
  });

  it('survives any value in place of a field of a valid message', () => {
    const pathArb = fc.nat();
    fc.assert(
      fc.property(sampleArb, codecArb, pathArb, fc.anything({ maxDepth: 3 }), (msg, codec, pick, value) => {
        const tree = structuredClone(msg) as unknown as Record<string, unknown>;
        const slots = mapSlots(tree);
        const [parent, key] = slots[pick % slots.length]!;
        parent[key] = value;
        let body: Uint8Array;
        try {
          body = encodeBody(codec, tree);
        } catch {
          return; // a value neither codec writes (a bigint in JSON, a symbol): nothing reaches the wire
        }
        receive([framedBody(codec, body)]);
      }),
      { numRuns: RUNS_PER_PROPERTY / 2 },
    );
  });

  it('refuses any body over its type’s item budget before decoding, and takes any within it', () => {
    // Any tree of maps and arrays in `data`; its items counted as the walk counts them.
    const treeArb = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.integer(),
        fc.string({ maxLength: 8 }),
        fc.array(tie('node'), { maxLength: 12 }),
        fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), tie('node'), { maxKeys: 12 }),
      ),
    })).node;
    const typeArb = fc.constantFrom('Heartbeat', 'LogChunk', 'JobResult', 'RegisterNode', 'Telemetry');
    const anyPackr = new Packr({ useRecords: false, variableMapSize: true });
    fc.assert(
      fc.property(typeArb, codecArb, fc.array(treeArb, { maxLength: 40 }), (type, codec, trees) => {
        const envelope = { type, id: 'f-1', data: { trees } };
        const body = codec === CODEC_JSON ? encodeBody(codec, envelope) : anyPackr.pack(envelope);
        const { items, depth } = shapeOf(envelope);
        const limit = bodyLimitOf(type);
        const over = items > limit.items || depth > MAX_DEPTH || (limit.bytes !== undefined && body.length > limit.bytes);
        let refused: MusterError | undefined;
        try {
          scanBody(codec, body);
        } catch (err) {
          refused = err as MusterError;
        }
        expect(refused?.code).toBe(over ? 'invalid_message' : undefined);
        if (over) expect(refused).toMatchObject({ field: 'data', replyTo: 'f-1' });
      }),
      { numRuns: RUNS_PER_PROPERTY / 10 },
    );
  });

  it('returns on hostile nesting instead of recursing out of the stack', () => {
    const deepJson = new TextEncoder().encode('['.repeat(MAX_FRAME - 2));
    const deepMsgpack = new Uint8Array(MAX_FRAME - 1).fill(0x91); // fixarray of 1, nested
    expect(() => receive([encodeFrame(CODEC_JSON, deepJson), encodeFrame(CODEC_MSGPACK, deepMsgpack)])).not.toThrow();
  });
});

/** Map entries plus array elements at every depth, and the deepest nesting (the envelope is 1). */
function shapeOf(value: unknown, depth = 1): { items: number; depth: number } {
  if (typeof value !== 'object' || value === null) return { items: 0, depth: depth - 1 };
  const children = Array.isArray(value) ? (value as unknown[]) : Object.values(value);
  let items = children.length;
  let deepest = children.length === 0 ? depth - 1 : depth;
  for (const child of children) {
    const inner = shapeOf(child, depth + 1);
    items += inner.items;
    deepest = Math.max(deepest, inner.depth);
  }
  return { items, depth: deepest };
}

type Slot = [Record<string, unknown>, string];

/** Every (object, key) pair of a JSON tree, so a fuzz case can replace any field at any depth. */
function mapSlots(root: Record<string, unknown>): Slot[] {
  const slots: Slot[] = [];
  const walk = (node: Record<string, unknown>): void => {
    for (const key of Object.keys(node)) {
      slots.push([node, key]);
      const child = node[key];
      if (typeof child === 'object' && child !== null) walk(child as Record<string, unknown>);
    }
  };
  walk(root);
  return slots;
}
