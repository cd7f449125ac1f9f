// Writes one stream frame: `length: u32 BE | codec: u8 | body` (PROTOCOL.md section 1).

export function encodeFrame(codecByte: number, body: Uint8Array): Uint8Array {
  const length = body.length + 1;
  const frame = new Uint8Array(4 + length);
  frame[0] = length >>> 24;
  frame[1] = (length >>> 16) & 0xff;
  frame[2] = (length >>> 8) & 0xff;
  frame[3] = length & 0xff;
  frame[4] = codecByte;
  frame.set(body, 5);
  return frame;
}
