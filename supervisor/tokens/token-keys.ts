// The keys a token may be verified with, chosen by the token's header (`alg`, `kid`).
// HS256 tokens are checked only against our shared secrets (the current one, and earlier ones
// kept for rotation), EdDSA / ES256 tokens only against the JWKS: an algorithm never meets a key
// of another kind, so a public key can never be used as an HMAC secret (alg confusion).
import { createHash, createSecretKey, webcrypto, type KeyObject } from 'node:crypto';
import { errors, type CryptoKey, type FlattenedJWSInput, type JWSHeaderParameters } from 'jose';
import { MusterError } from '../../protocol/errors.js';
import { Hs256Signer } from './hs256-signer.js';
import { Hs256Verifier } from './hs256-verifier.js';
import { MIN_SECRET_BYTES } from './secret.js';

/** The algorithms Muster knows; `none` and every other one are refused. */
export type TokenAlgorithm = 'HS256' | 'EdDSA' | 'ES256';

export const TOKEN_ALGORITHMS: readonly TokenAlgorithm[] = ['HS256', 'EdDSA', 'ES256'];

/** The signing algorithm of every token the plane mints. */
export const SIGNING_ALGORITHM: TokenAlgorithm = 'HS256';

/** Finds the public key of an EdDSA or ES256 token in a JWKS (jose's local or remote key set). */
export type JwksResolver = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey | KeyObject>;

/** A shared secret with the key id derived from it. */
export interface HmacKey {
  /** First 8 bytes of the secret's SHA-256, base64url: names the key without revealing it. */
  kid: string;
  key: KeyObject;
  /**
   * The same secret as a WebCrypto key, imported once: jose 6 works in WebCrypto and, given a
   * KeyObject or bytes, imports the key again on every sign and verify (7% of a registration storm).
   */
  cryptoKey: Promise<CryptoKey>;
}

// Key ids are names, never paths: letters, digits and `. _ : + = -`, no `..`, at most 128 characters.
const KID_PATTERN = /^[A-Za-z0-9._:+=-]{1,128}$/;

/** The key id of an HS256 secret, the same in every process that holds the secret. */
export function hmacKeyId(secret: Uint8Array): string {
  return createHash('sha256').update(secret).digest().subarray(0, 8).toString('base64url');
}

/** `secret` as a key (at least 32 bytes) with its key id. */
export function hmacKey(secret: Uint8Array): HmacKey {
  if (secret.length < MIN_SECRET_BYTES) throw new Error(`JWT secret must be at least ${MIN_SECRET_BYTES} bytes`);
  const cryptoKey = webcrypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']) as Promise<CryptoKey>;
  // Awaited only when first used; a failure then is that call's.
  cryptoKey.catch(() => undefined);
  return { kid: hmacKeyId(secret), key: createSecretKey(secret), cryptoKey };
}

/** The `jwtAlgorithms` setting: a comma-separated allow-list that must include HS256. */
export function parseAlgorithms(text: string): TokenAlgorithm[] {
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  for (const name of names) {
    if (!(TOKEN_ALGORITHMS as readonly string[]).includes(name)) {
      throw new Error(`jwtAlgorithms: "${name}" is not accepted (choose from ${TOKEN_ALGORITHMS.join(', ')})`);
    }
  }
  // The plane signs session tokens with HS256 and must be able to check them when nodes resume.
  if (!names.includes(SIGNING_ALGORITHM)) throw new Error('jwtAlgorithms must include HS256: session tokens use it');
  return [...new Set(names)] as TokenAlgorithm[];
}

export interface KeyRingOptions {
  /** Verify-only secrets of earlier rotations. */
  previous?: readonly Uint8Array[];
  /** Where EdDSA / ES256 keys come from; without it such tokens are refused. */
  jwks?: JwksResolver;
}

export class KeyRing {
  /** The key new tokens are signed with. */
  readonly signing: HmacKey;
  /** Signs with `signing`, synchronously. */
  readonly signer: Hs256Signer;
  /** Checks tokens signed with any of our secrets, synchronously (the rest go to jose). */
  readonly verifier = new Hs256Verifier();
  readonly #byKid = new Map<string, Promise<CryptoKey>>();
  readonly #jwks: JwksResolver | undefined;

  constructor(current: Uint8Array, options: KeyRingOptions = {}) {
    this.signing = hmacKey(current);
    this.signer = new Hs256Signer(this.signing.key, this.signing.kid);
    for (const secret of options.previous ?? []) {
      const { kid, cryptoKey, key } = hmacKey(secret);
      if (this.#byKid.has(kid)) continue;
      this.#byKid.set(kid, cryptoKey);
      this.verifier.add(key, kid);
    }
    this.#byKid.set(this.signing.kid, this.signing.cryptoKey);
    this.verifier.add(this.signing.key, this.signing.kid);
    this.#jwks = options.jwks;
  }

  /**
   * The key for a token with this header, for jose's `jwtVerify`. HS256: the secret named by
   * `kid`, or the current one when there is no `kid`. EdDSA / ES256: the JWKS key named by `kid`.
   * Throws `auth_failed` for a malformed or unknown `kid`.
   */
  resolve(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey | KeyObject> {
    const kid: unknown = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || !KID_PATTERN.test(kid) || kid.includes('..'))) {
      return Promise.reject(new MusterError('auth_failed', 'token key id is malformed'));
    }
    if (header.alg === 'HS256') {
      const key = kid === undefined ? this.signing.cryptoKey : this.#byKid.get(kid);
      if (key === undefined) return Promise.reject(new MusterError('auth_failed', 'token key id is unknown'));
      return key;
    }
    if (header.alg === 'EdDSA' || header.alg === 'ES256') {
      if (this.#jwks === undefined) {
        return Promise.reject(new MusterError('auth_failed', `no key set is configured for ${header.alg} tokens`));
      }
      return this.#jwks(header, token).catch((err: unknown) => {
        throw keySetFailure(err);
      });
    }
    return Promise.reject(new MusterError('auth_failed', 'token algorithm not allowed'));
  }
}

/**
 * A key-set lookup that failed for want of a key keeps jose's error (the token is at fault);
 * any other failure (the URL unreachable, a bad answer, a bad key) means the set itself is unusable.
 */
function keySetFailure(err: unknown): unknown {
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return err;
  if (err instanceof errors.JWKSTimeout) return new MusterError('auth_failed', 'the key set could not be fetched in time');
  return new MusterError('auth_failed', 'the key set is unavailable');
}
