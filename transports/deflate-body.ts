// The `deflate` wire feature (PROTOCOL.md section 8): raw DEFLATE (RFC 1951) bodies, marked by
// bit 0x40 of the codec byte (DEFLATE_BIT in protocol/codec.ts), on stream transports of
// sessions that agreed to it. Inflating stops at the frame limit: a small frame that would inflate past `max_frame_bytes - 1` costs
// only the bytes up to that point and answers `frame_too_large`; one that does not inflate is
// `malformed_frame`. Both are fatal, as for a plain frame of the same fault.
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { MusterError } from '../protocol/errors.js';


/** Fast over small: build logs compress well at level 1, and the event loop pays for each level. */
const LEVEL = 1;

export function deflateBody(body: Uint8Array): Uint8Array {
  return deflateRawSync(body, { level: LEVEL });
}

/** The inflated body, at most `maxBytes` long. */
export function inflateBody(body: Uint8Array, maxBytes: number): Uint8Array {
  try {
    return inflateRawSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new MusterError('frame_too_large', `a compressed body inflates past ${maxBytes} bytes`);
    }
    throw new MusterError('malformed_frame', 'a compressed body that does not inflate');
  }
}
