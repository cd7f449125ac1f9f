// Verifies the plane's own HS256 tokens with node:crypto's HMAC, synchronously: the other half of
// hs256-signer.ts. jose verifies through WebCrypto, a round trip through libuv's thread pool of
// about 100 µs of CPU per token in a resume storm, where `createHmac` takes a few µs.
// Only a token whose header is, byte for byte, the one the plane's signer writes for one of its
// keys is taken here, and only when it passes every check jose's `jwtVerify` would make with the
// options tokens.ts gives it (signature, a JSON object for claims, `iss`, `aud`, `exp` required,
// `iat`/`nbf`/`exp` numbers, the clock tolerance). Anything else, including every token that
// fails, is left to jose (`undefined`), so the verdicts and error messages stay jose's.
import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { hs256HeaderSegment } from './hs256-signer.js';

/** What a token must meet, as jose's `jwtVerify` options in tokens.ts. */
export interface Hs256Expectation {
  issuer: string;
  audience: string;
  toleranceSeconds: number;
  /** The current time, ms. */
  nowMs: number;
}

// jose decodes claims with a fatal decoder: bytes that are not UTF-8 are a malformed token.
const UTF8 = new TextDecoder('utf-8', { fatal: true });
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** base64url of 32 bytes, unpadded. */
const SIGNATURE_CHARS = 43;

export class Hs256Verifier {
  /** The header segment the signer writes for a key, and that key. */
  readonly #keys = new Map<string, KeyObject>();

  /** Takes tokens signed with `key` under `kid` (the current key and earlier ones). */
  add(key: KeyObject, kid: string): void {
    this.#keys.set(hs256HeaderSegment(kid), key);
  }

  /** The claims of `token` when it is one of ours and valid; `undefined`: jose must decide. */
  verify(token: string, expect: Hs256Expectation): JWTPayload | undefined {
    const headerEnd = token.indexOf('.');
    const payloadEnd = token.indexOf('.', headerEnd + 1);
    if (headerEnd <= 0 || payloadEnd < 0 || token.length - payloadEnd - 1 !== SIGNATURE_CHARS) return undefined;
    const key = this.#keys.get(token.slice(0, headerEnd));
    if (key === undefined) return undefined;
    // As UTF-8 bytes: a character outside ASCII must never pass for the one it truncates to.
    const given = Buffer.from(token.slice(payloadEnd + 1), 'utf8');
    const expected = createHmac('sha256', key).update(token.slice(0, payloadEnd)).digest();
    if (given.length !== SIGNATURE_CHARS || !timingSafeEqual(Buffer.from(expected.toString('base64url'), 'ascii'), given)) return undefined;
    const claims = decodeClaims(token.slice(headerEnd + 1, payloadEnd));
    return claims !== undefined && claimsHold(claims, expect) ? claims : undefined;
  }
}

/** The claims segment as a plain JSON object, decoded as strictly as jose does, or undefined. */
function decodeClaims(segment: string): JWTPayload | undefined {
  // Canonical base64url only (no padding, no whitespace, no length that no bytes encode to).
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(UTF8.decode(Buffer.from(segment, 'base64url')));
  } catch {
    return undefined;
  }
  return isPlainObject(claims) ? (claims as JWTPayload) : undefined;
}

function isPlainObject(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Object.prototype.toString.call(value) !== '[object Object]') return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === null || Object.getPrototypeOf(prototype) === null;
}

/** jose's claim checks for `{ issuer, audience, clockTolerance, currentDate, requiredClaims: ['exp'] }`. */
function claimsHold(claims: JWTPayload, expect: Hs256Expectation): boolean {
  if (!Object.hasOwn(claims, 'iss') || !Object.hasOwn(claims, 'aud') || !Object.hasOwn(claims, 'exp')) return false;
  if (claims.iss !== expect.issuer) return false;
  const aud: unknown = claims.aud;
  if (typeof aud === 'string' ? aud !== expect.audience : !Array.isArray(aud) || !aud.includes(expect.audience)) return false;
  const now = Math.floor(expect.nowMs / 1000);
  const { iat, nbf, exp } = claims;
  if (iat !== undefined && typeof iat !== 'number') return false;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + expect.toleranceSeconds)) return false;
  return typeof exp === 'number' && exp > now - expect.toleranceSeconds;
}
