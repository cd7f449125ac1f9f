// Signs the plane's own HS256 tokens (JWS compact serialization, RFC 7515 section 7.1) with
// node:crypto's HMAC, synchronously. jose 6 signs only through WebCrypto, whose every call is a
// round trip through libuv's thread pool: about 40 µs of CPU alone and far more under a
// registration storm (thread wake-ups, promises), where `createHmac` takes about 5 µs. The
// output is byte for byte what jose's `SignJWT` gives for the same header and claims (the
// tests compare them); hs256-verifier.ts checks them the same way, and leaves every other
// token (and every one that fails) to jose.
// The header is the same for every token of one key, so it is encoded once.
import { createHmac, type KeyObject } from 'node:crypto';
import type { JWTPayload } from 'jose';

export class Hs256Signer {
  /** `base64url(header) + '.'`, the start of every signing input. */
  readonly #prefix: string;
  readonly #key: KeyObject;

  constructor(key: KeyObject, kid: string) {
    this.#key = key;
    this.#prefix = `${hs256HeaderSegment(kid)}.`;
  }

  /**
   * The compact JWT of `claims`, serialized in their own key order (as jose's `SignJWT` does,
   * which copies the claims given and then sets each registered claim in the order its setter
   * was called). Every value must be a string, a finite number or a JSON value of those.
   */
  sign(claims: JWTPayload): string {
    const input = this.#prefix + base64url(JSON.stringify(claims));
    return `${input}.${createHmac('sha256', this.#key).update(input).digest('base64url')}`;
  }
}

/** The encoded header of every token signed under `kid`: the key order of jose's `setProtectedHeader({ alg, typ, kid })`. */
export function hs256HeaderSegment(kid: string): string {
  return base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
