// Body codecs of PROTOCOL.md section 1: the codec byte names JSON or MessagePack;
// bit 0x80 marks an encrypted body (section 6) whose plaintext uses the low 7 bits' codec.
import { Packr } from 'msgpackr';
import { MusterError } from './errors.js';

export const CODEC_JSON = 0x01;
export const CODEC_MSGPACK = 0x02;
export const ENCRYPTED_BIT = 0x80;
/** A raw-DEFLATE body (the `deflate` wire feature, section 8); only on a session that agreed to it. */
export const DEFLATE_BIT = 0x40;

export type Codec = typeof CODEC_JSON | typeof CODEC_MSGPACK;
export type CodecName = 'json' | 'msgpack';

export function codecByName(name: CodecName): Codec {
  return name === 'json' ? CODEC_JSON : CODEC_MSGPACK;
}

/** True for a codec byte this version can read: JSON or MessagePack, encrypted or not. */
export function isKnownCodecByte(byte: number): boolean {
  const plain = byte & ~ENCRYPTED_BIT;
  return plain === CODEC_JSON || plain === CODEC_MSGPACK;
}

// Plain maps and no msgpackr record extension, so that clients in any language can read what we write.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

export function encodeBody(codec: Codec, value: unknown): Uint8Array {
  return codec === CODEC_JSON ? utf8Encoder.encode(JSON.stringify(value)) : packr.pack(value);
}

/** Decodes a plaintext body; anything that does not decode is `malformed_frame`. */
export function decodeBody(codec: Codec, body: Uint8Array): unknown {
  try {
    return codec === CODEC_JSON ? JSON.parse(utf8Decoder.decode(body)) : packr.unpack(body);
  } catch (cause) {
    throw new MusterError('malformed_frame', 'frame body does not decode', { cause });
  }
}
