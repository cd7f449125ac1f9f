// Writes one stream frame: `length: u32 BE | codec: u8 | body` (PROTOCOL.md section 1).

/** Frames below this size go into a slice of Node's shared buffer pool (`encodePooledFrame`). */
const POOLED_BELOW = 4096;

export function encodeFrame(codecByte: number, body: Uint8Array): Uint8Array {
  return writeFrame(new Uint8Array(5 + body.length), codecByte, body);
}

/**
 * `encodeFrame` for a frame written to a socket at once: one of a few hundred bytes (every
 * JobAssignment and ack) takes a slice of Node's buffer pool and costs no allocation of its own.
 * Every byte of the slice is written, so its unset start never shows.
 */
export function encodePooledFrame(codecByte: number, body: Uint8Array): Uint8Array {
  if (body.length >= POOLED_BELOW) return encodeFrame(codecByte, body);
  return writeFrame(Buffer.allocUnsafe(5 + body.length), codecByte, body);
}

function writeFrame(frame: Uint8Array, codecByte: number, body: Uint8Array): Uint8Array {
  const length = body.length + 1;
  frame[0] = length >>> 24;
  frame[1] = (length >>> 16) & 0xff;
  frame[2] = (length >>> 8) & 0xff;
  frame[3] = length & 0xff;
  frame[4] = codecByte;
  frame.set(body, 5);
  return frame;
}
