// The two ways a frame is written (protocol/frame-encoder.ts): a pooled frame is byte for byte
// the frame `encodeFrame` gives, on either side of the pooling threshold, whatever the pool held.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeFrame, encodePooledFrame } from '../../protocol/frame-encoder.js';

describe('encodePooledFrame', () => {
  it('writes the same bytes as encodeFrame, small (pooled) and large alike', () => {
    // Dirty the pool first: an unset byte of a slice would show as leftover 0xee.
    Buffer.allocUnsafe(4000).fill(0xee);
    const sizes = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 4090, max: 4100 }), fc.integer({ min: 0, max: 9000 }));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), sizes, (codecByte, size) => {
        const body = Uint8Array.from({ length: size }, (_, i) => (i * 31 + size) & 0xff);
        const pooled = encodePooledFrame(codecByte, body);
        expect(Buffer.from(pooled).equals(Buffer.from(encodeFrame(codecByte, body)))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
