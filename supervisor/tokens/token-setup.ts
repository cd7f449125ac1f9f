// Builds the plane's TokenAuthority from configuration: the current secret, the earlier ones kept
// for rotation (`jwtPreviousSecrets`), the JWKS (`jwtJwks`), the algorithm allow-list and the
// clock leeway. Kept out of tokens.ts so that the token code knows nothing of configuration.
import type { Config } from '../config.js';
import { openJwks } from './jwks-source.js';
import { MIN_SECRET_BYTES, loadSecret } from './secret.js';
import { parseAlgorithms } from './token-keys.js';
import { TokenAuthority, type TokenAuthorityOptions } from './tokens.js';

/** The authority `config` describes; `extras` adds what is not configuration (revocations, a clock). */
export function tokenAuthorityFromConfig(
  config: Config,
  extras: Pick<TokenAuthorityOptions, 'isRevoked' | 'now'> = {},
): TokenAuthority {
  const options: TokenAuthorityOptions = {
    previousSecrets: previousSecrets(config.jwtPreviousSecrets),
    algorithms: parseAlgorithms(config.jwtAlgorithms),
    clockToleranceSeconds: config.jwtClockToleranceSeconds,
    verifiedCacheTtlMs: config.tokenCacheTtlMs,
    verifiedCacheEntries: config.tokenCacheEntries,
    ...extras,
  };
  if (config.jwtJwks !== '') options.jwks = openJwks(config.jwtJwks, { timeoutMs: config.jwtJwksTimeoutMs });
  return new TokenAuthority(loadSecret(config), options);
}

/** `jwtPreviousSecrets`: comma-separated, each at least 32 bytes of UTF-8. */
export function previousSecrets(text: string): Uint8Array[] {
  const secrets: Uint8Array[] = [];
  text.split(',').forEach((part, index) => {
    const trimmed = part.trim();
    if (trimmed === '') return;
    const bytes = new TextEncoder().encode(trimmed);
    // The position, never the secret, goes into the message.
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new Error(`jwtPreviousSecrets: entry ${index + 1} must be at least ${MIN_SECRET_BYTES} bytes`);
    }
    secrets.push(bytes);
  });
  return secrets;
}
