// The stream framing of PROTOCOL.md section 1: frames survive any split or coalescing,
// and a bad header is rejected the moment its bytes arrive, before any body is read.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FrameDecoder } from '../../protocol/frame-decoder.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { MusterError } from '../../protocol/errors.js';
import { concat, splitAt } from './byte-chunks.js';

interface Frame {
  codecByte: number;
  body: Uint8Array;
}

/** Pushes `chunks` in order and returns copies of the frames seen (bodies may be views of the input). */
function decodeAll(decoder: FrameDecoder, chunks: Iterable<Uint8Array>): Frame[] {
  const out: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (codecByte, body) => out.push({ codecByte, body: body.slice() }));
  return out;
}

// toEqual walks typed arrays element by element, far too slowly for 256 KiB bodies.
function expectSameFrames(actual: Frame[], expected: Frame[]): void {
  const summary = (frames: Frame[]): string[] =>
    frames.map((f) => `${f.codecByte}:${f.body.length}:${Buffer.from(f.body).toString('base64')}`);
  expect(summary(actual)).toStrictEqual(summary(expected));
}

function* singleBytes(bytes: Uint8Array): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

function header(length: number, codecByte?: number): Uint8Array {
  const h = new Uint8Array(codecByte === undefined ? 4 : 5);
  new DataView(h.buffer).setUint32(0, length);
  if (codecByte !== undefined) h[4] = codecByte;
  return h;
}

function expectMusterError(fn: () => void, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    expect((err as MusterError).code).toBe(code);
    expect((err as MusterError).fatal).toBe(true);
    return;
  }
  expect.fail(`expected a MusterError ${code}`);
}

const MAX = 256 * 1024;

const frameArb: fc.Arbitrary<Frame> = fc.record({
  codecByte: fc.constantFrom(0x01, 0x02, 0x81, 0x82),
  body: fc.oneof(
    { weight: 6, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 3, arbitrary: fc.uint8Array({ minLength: 64, maxLength: 4096 }) },
    // Large bodies: content does not matter, size does (a filled array keeps generation cheap).
    { weight: 1, arbitrary: fc.integer({ min: 4096, max: MAX - 1 }).map((n) => new Uint8Array(n).fill(n & 0xff)) },
  ),
});

describe('FrameDecoder', () => {
  it('decodes any stream of valid frames split at arbitrary points to the same frames in order', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (frames, cuts) => {
        const stream = concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
        const decoded = decodeAll(new FrameDecoder(MAX), splitAt(stream, cuts));
        expectSameFrames(decoded, frames);
      }),
      { numRuns: 300 },
    );
  });

  it('decodes a stream fed one byte at a time', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 6 }), (frames) => {
        const stream = concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
        expectSameFrames(decodeAll(new FrameDecoder(MAX), singleBytes(stream)), frames);
      }),
      { numRuns: 40 },
    );
  });

  it('decodes empty bodies and a body of exactly the maximum length', () => {
    const biggest = new Uint8Array(MAX - 1).fill(7); // length = codec byte + body = MAX
    const frames: Frame[] = [
      { codecByte: 0x01, body: new Uint8Array(0) },
      { codecByte: 0x02, body: biggest },
      { codecByte: 0x82, body: new Uint8Array(0) },
    ];
    const stream = concat(frames.map((f) => encodeFrame(f.codecByte, f.body)));
    expectSameFrames(decodeAll(new FrameDecoder(MAX), [stream]), frames);
    expectSameFrames(decodeAll(new FrameDecoder(MAX), singleBytes(stream)), frames);
  });

  it('holds no bytes once every frame is complete', () => {
    const decoder = new FrameDecoder(MAX);
    const frame = encodeFrame(0x01, new TextEncoder().encode('{"type":"Heartbeat","data":{}}'));
    decoder.push(frame.subarray(0, 7), () => {});
    expect(decoder.bufferedBytes).toBe(7);
    decoder.push(frame.subarray(7), () => {});
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('rejects an oversize length with frame_too_large as soon as the 4 length bytes arrive', () => {
    const oversize = fc.integer({ min: MAX + 1, max: 0xffff_ffff });
    fc.assert(
      fc.property(oversize, fc.array(fc.nat(4), { maxLength: 3 }), (length, cuts) => {
        const decoder = new FrameDecoder(MAX);
        const chunks = splitAt(header(length), cuts).filter((c) => c.length > 0);
        for (const chunk of chunks.slice(0, -1)) decoder.push(chunk, () => expect.fail('no frame expected'));
        // The chunk that completes the length throws: no codec byte and no body byte was pushed.
        expectMusterError(() => decoder.push(chunks.at(-1)!, () => {}), 'frame_too_large');
        expect(decoder.bufferedBytes).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('delivers the frames before an oversize header, then refuses everything after it', () => {
    const decoder = new FrameDecoder(1024);
    const good = encodeFrame(0x01, new TextEncoder().encode('{}'));
    const seen: Frame[] = [];
    expectMusterError(
      () => decoder.push(concat([good, header(1025)]), (codecByte, body) => seen.push({ codecByte, body: body.slice() })),
      'frame_too_large',
    );
    expect(seen).toEqual([{ codecByte: 0x01, body: new TextEncoder().encode('{}') }]);
    decoder.push(good, () => expect.fail('a failed decoder delivers nothing'));
  });

  it('rejects length 0 with malformed_frame as soon as the 4 length bytes arrive', () => {
    const decoder = new FrameDecoder(MAX);
    const h = header(0);
    decoder.push(h.subarray(0, 2), () => {});
    decoder.push(h.subarray(2, 3), () => {});
    expectMusterError(() => decoder.push(h.subarray(3), () => {}), 'malformed_frame');
  });

  it('rejects an unknown codec byte with unsupported_codec as soon as the codec byte arrives', () => {
    // Codecs 1 and 2, with the encrypted bit 0x80 and the deflate bit 0x40 (the session judges
    // whether deflate was agreed: test/supervisor/nodes/deflate.test.ts).
    const known = new Set([0x01, 0x02, 0x81, 0x82, 0x41, 0x42, 0xc1, 0xc2]);
    for (let codecByte = 0; codecByte < 256; codecByte++) {
      if (known.has(codecByte)) continue;
      const decoder = new FrameDecoder(MAX);
      decoder.push(header(100), () => {});
      expectMusterError(() => decoder.push(Uint8Array.of(codecByte), () => {}), 'unsupported_codec');
    }
  });

  it('accepts the encrypted bit 0x80 with codec 1 and 2 and passes the byte through', () => {
    const body = Uint8Array.of(1, 2, 3, 4);
    const stream = concat([encodeFrame(0x81, body), encodeFrame(0x82, body)]);
    expectSameFrames(decodeAll(new FrameDecoder(MAX), singleBytes(stream)), [
      { codecByte: 0x81, body },
      { codecByte: 0x82, body },
    ]);
  });
});
