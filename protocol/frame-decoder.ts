// Streaming decoder for stream transports (PROTOCOL.md section 1):
// `length: u32 BE | codec: u8 | body`. Frames may arrive split or coalesced in any way.
// An oversize length or an unknown codec is rejected as soon as its header bytes arrive,
// before any of the body is buffered.
import { DEFLATE_BIT, isKnownCodecByte } from './codec.js';
import { MusterError } from './errors.js';

export const DEFAULT_MAX_FRAME_BYTES = 1_048_576;
const HEADER_BYTES = 5;

export type FrameHandler = (codecByte: number, body: Uint8Array) => void;

export class FrameDecoder {
  // Bytes of an incomplete frame, kept as received and joined once enough have arrived,
  // so that a large frame in many reads is copied once, not once per read.
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private neededBytes = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /**
   * Feeds bytes in; calls `onFrame` for each complete frame, in order.
   * Throws a fatal MusterError on the first bad header; the decoder is then unusable,
   * as the connection must close.
   */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    if (this.failed) return;
    let buf = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.neededBytes) return;
      buf = concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let offset = 0;
    for (;;) {
      const available = buf.length - offset;
      if (available < 4) {
        this.keep(buf, offset, 4);
        return;
      }
      const length = readLength(buf, offset);
      this.checkLength(length);
      if (available < HEADER_BYTES) {
        this.keep(buf, offset, HEADER_BYTES);
        return;
      }
      this.checkCodec(buf[offset + 4]!);
      if (available < 4 + length) {
        this.keep(buf, offset, 4 + length);
        return;
      }
      const end = offset + 4 + length;
      onFrame(buf[offset + 4]!, buf.subarray(offset + HEADER_BYTES, end));
      offset = end;
    }
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  private keep(buf: Uint8Array, offset: number, needed: number): void {
    if (offset === buf.length) return;
    // Copy the tail: a few leftover bytes must not pin the whole socket chunk in memory.
    const tail = buf.slice(offset);
    this.pending = [tail];
    this.pendingBytes = tail.length;
    this.neededBytes = needed;
  }

  private checkLength(length: number): void {
    if (length === 0) this.fail(new MusterError('malformed_frame', 'frame length is 0'));
    if (length > this.maxFrameBytes) {
      this.fail(new MusterError('frame_too_large', `frame of ${length} bytes exceeds ${this.maxFrameBytes}`));
    }
  }

  private checkCodec(byte: number): void {
    // The deflate bit is the session's to judge: it is allowed only once `deflate` was agreed.
    if (!isKnownCodecByte(byte & ~DEFLATE_BIT)) {
      this.fail(new MusterError('unsupported_codec', `unknown codec byte 0x${byte.toString(16).padStart(2, '0')}`));
    }
  }

  private fail(err: MusterError): never {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    throw err;
  }
}

function readLength(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) >>> 0) + (buf[offset + 1]! << 16) + (buf[offset + 2]! << 8) + buf[offset + 3]!;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
