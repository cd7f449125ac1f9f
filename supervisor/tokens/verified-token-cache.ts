// Tokens already verified, by their text, for a short time: a fleet registers with one shared
// registration token and a CI system calls the API with one token, so the same text is verified
// again and again, and each HS256 check is a WebCrypto round trip (jose). A hit still ends at the
// token's own expiry (with the leeway); revocation is checked by the caller on every use, hit or not.
// Bounded: past `maxEntries` the oldest entry goes first.
import type { JWTPayload } from 'jose';

export interface VerifiedTokenCacheOptions {
  /** How long a verified token is trusted without verifying it again; 0: no cache. */
  ttlMs: number;
  maxEntries: number;
  /** Leeway past `exp`, in seconds, as the verification allows. */
  toleranceSeconds: number;
}

interface Entry {
  payload: JWTPayload;
  /** Epoch ms: the earlier of the cache time's end and the token's expiry (with leeway). */
  untilMs: number;
}

export class VerifiedTokenCache {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly o: VerifiedTokenCacheOptions) {}

  /** Entries held now: for tests. */
  get size(): number {
    return this.#entries.size;
  }

  /** The payload `token` was verified with for `audience`, if that is still trusted at `nowMs`. */
  get(audience: string, token: string, nowMs: number): JWTPayload | undefined {
    const key = keyOf(audience, token);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (nowMs < entry.untilMs) return entry.payload;
    this.#entries.delete(key);
    return undefined;
  }

  /** Remembers a token just verified for `audience` at `nowMs`. */
  set(audience: string, token: string, payload: JWTPayload, nowMs: number): void {
    if (this.o.ttlMs <= 0 || this.o.maxEntries <= 0 || typeof payload.exp !== 'number') return;
    const untilMs = Math.min(nowMs + this.o.ttlMs, (payload.exp + this.o.toleranceSeconds) * 1000);
    if (untilMs <= nowMs) return;
    const key = keyOf(audience, token);
    this.#entries.delete(key);
    while (this.#entries.size >= this.o.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    this.#entries.set(key, { payload, untilMs });
  }
}

function keyOf(audience: string, token: string): string {
  // A space never occurs in an audience we use nor in a compact JWT.
  return `${audience} ${token}`;
}
