// AES-256-GCM for encrypted frames (PROTOCOL.md section 6): a body is
// `nonce (12) | ciphertext | tag (16)`, authenticated together with its codec byte (0x80 set).
// It lives in transports/, not protocol/, because it needs node:crypto; it is synchronous,
// as it runs on every frame and the hot path must not go async.
//
// Nonces. One key is shared by a whole fleet, and no party can coordinate with the others,
// so uniqueness is guaranteed within one cipher and made negligible across ciphers:
// - each cipher (one per connection side) starts at a random 96-bit nonce and counts up
//   from it by one per frame, as a 96-bit big-endian integer: within one cipher no nonce can
//   repeat, and the cipher refuses to encrypt more than `MAX_ENCRYPTIONS` (2^32) frames, far
//   below the 2^96 after which its own count would come back round;
// - two ciphers collide only if their runs of nonces overlap: for runs of q1 and q2 frames
//   that has probability at most (q1 + q2) / 2^96, so over n ciphers that sent Q frames in all
//   it is at most n·Q / 2^96, e.g. 2^-36 for a million connections that sent 2^40 frames.
// A fixed split (a 32-bit random prefix and a 64-bit counter from 0) would be much weaker:
// two ciphers with the same prefix collide on their very first frame, which happens with
// probability about n^2 / 2^33: more likely than not after some 100,000 connections under one key.
// Fully random nonces per frame give Q^2 / 2^97, also worse when frames outnumber ciphers.
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ENCRYPTED_BIT } from '../protocol/codec.js';
import { MusterError } from '../protocol/errors.js';

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** What encryption adds to a body: its nonce and its tag. */
export const ENCRYPTION_OVERHEAD_BYTES = NONCE_BYTES + TAG_BYTES;
/** Frames one cipher encrypts before it refuses (see the header). */
export const MAX_ENCRYPTIONS = 2 ** 32;

const ALGORITHM = 'aes-256-gcm';
// 32 bytes in standard base64: 43 characters and one `=` of padding.
const KEY_TEXT = /^[A-Za-z0-9+/]{43}=$/;

export interface PayloadCipherOptions {
  /** Frames this cipher encrypts before it refuses; default `MAX_ENCRYPTIONS`. Tests lower it. */
  maxEncryptions?: number;
  /** The first nonce (12 bytes); default random. Tests set it; nothing else should. */
  firstNonce?: Uint8Array;
}

/** One side of one connection: encrypts what it sends, decrypts what it receives. */
export class PayloadCipher {
  private readonly key: KeyObject;
  // The next nonce to spend; counted up in place.
  private readonly nonce: Buffer;
  private readonly maxEncryptions: number;
  private spent = 0;

  constructor(key: KeyObject | Uint8Array, options: PayloadCipherOptions = {}) {
    this.key = key instanceof Uint8Array ? createSecretKey(key) : key;
    if (this.key.type !== 'secret' || this.key.symmetricKeySize !== KEY_BYTES) {
      throw new Error(`an encryption key must be ${KEY_BYTES} bytes`);
    }
    const first = options.firstNonce ?? randomBytes(NONCE_BYTES);
    if (first.length !== NONCE_BYTES) throw new Error(`a nonce must be ${NONCE_BYTES} bytes`);
    this.nonce = Buffer.from(first);
    this.maxEncryptions = options.maxEncryptions ?? MAX_ENCRYPTIONS;
  }

  /** Frames encrypted so far. */
  get encryptions(): number {
    return this.spent;
  }

  /**
   * `nonce | ciphertext | tag` for `plaintext` sent under `codecByte` (0x80 is set for the
   * AAD whether given or not). Throws a plain Error once this cipher has used up its nonces:
   * its connection must then be closed, and a new connection gets a new cipher.
   */
  encrypt(codecByte: number, plaintext: Uint8Array): Buffer {
    if (this.spent >= this.maxEncryptions) {
      throw new Error(`this connection encrypted ${this.spent} frames, the most one nonce sequence allows; reconnect`);
    }
    const out = Buffer.allocUnsafe(NONCE_BYTES + plaintext.length + TAG_BYTES);
    // Spent before it is used: whatever happens next, this nonce is never handed out again.
    this.nonce.copy(out, 0);
    increment(this.nonce);
    this.spent += 1;
    const cipher = createCipheriv(ALGORITHM, this.key, out.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    cipher.setAAD(aadOf(codecByte));
    const written = cipher.update(plaintext).copy(out, NONCE_BYTES);
    // GCM is a stream mode: `final` adds no bytes, it computes the tag.
    cipher.final();
    cipher.getAuthTag().copy(out, NONCE_BYTES + written);
    return out;
  }

  /**
   * The plaintext of an encrypted body received under `codecByte`. A body that is too short,
   * was changed in any bit, was sent under another codec byte or with another key throws
   * `MusterError('decrypt_failed')`.
   */
  decrypt(codecByte: number, body: Uint8Array): Buffer {
    if (body.length < ENCRYPTION_OVERHEAD_BYTES) {
      throw new MusterError('decrypt_failed', `encrypted body of ${body.length} bytes is shorter than nonce and tag`);
    }
    const tagAt = body.length - TAG_BYTES;
    try {
      const decipher = createDecipheriv(ALGORITHM, this.key, body.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
      decipher.setAAD(aadOf(codecByte));
      decipher.setAuthTag(body.subarray(tagAt));
      const plaintext = decipher.update(body.subarray(NONCE_BYTES, tagAt));
      decipher.final(); // throws when the tag does not match
      return plaintext;
    } catch (cause) {
      throw new MusterError('decrypt_failed', 'encrypted body failed authentication', { cause });
    }
  }
}

/**
 * Reads a key file: the 32-byte key base64-encoded (44 characters), surrounding whitespace
 * ignored. Anything else throws a plain Error naming the file, never its content.
 */
export function loadEncryptionKey(path: string): KeyObject {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new Error(`cannot read encryption key file ${path}`, { cause });
  }
  return parseEncryptionKey(text, `encryption key file ${path}`);
}

/** The key in `text` (as in a key file); `origin` names where it came from in errors. */
export function parseEncryptionKey(text: string, origin: string): KeyObject {
  const trimmed = text.trim();
  const bytes = KEY_TEXT.test(trimmed) ? Buffer.from(trimmed, 'base64') : undefined;
  // The round trip refuses non-canonical text (stray bits in the last character).
  if (bytes === undefined || bytes.length !== KEY_BYTES || bytes.toString('base64') !== trimmed) {
    throw new Error(
      `${origin} must hold ${KEY_BYTES} bytes base64-encoded (44 characters), e.g. from \`openssl rand -base64 32\``,
    );
  }
  const key = createSecretKey(bytes);
  bytes.fill(0); // the KeyObject holds its own copy
  return key;
}

/** Counts a big-endian 96-bit integer up by one, in place (wrapping at 2^96). */
function increment(nonce: Buffer): void {
  for (let i = nonce.length - 1; i >= 0; i--) {
    nonce[i] = (nonce[i]! + 1) & 0xff;
    if (nonce[i] !== 0) return;
  }
}

// The AAD of each codec byte, built once: one byte, the codec with 0x80 set.
const AADS = Array.from({ length: 256 }, (_, byte) => Buffer.of(byte | ENCRYPTED_BIT));

function aadOf(codecByte: number): Buffer {
  return AADS[codecByte & 0xff]!;
}
