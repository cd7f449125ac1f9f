// A token verified once is trusted by its text for a while (tokenCacheTtlMs): the same
// registration or API token presented again costs no signature check, yet it still expires
// at its own `exp` and a revocation refuses it at once.
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../../protocol/errors.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';

const SECRET = new TextEncoder().encode('test-secret-that-is-32-bytes-long!!');
const NODE = { hostname: 'runner-1', nodeType: 'linux' };

/** An authority with an injected clock and revocation list, caching for `ttlMs`. */
function setup(ttlMs = 60_000, entries = 1_000) {
  const clock = { ms: Date.parse('2025-03-01T12:00:00Z') };
  const revoked = new Set<string>();
  const tokens = new TokenAuthority(SECRET, {
    now: () => new Date(clock.ms),
    isRevoked: (jti) => revoked.has(jti),
    clockToleranceSeconds: 0,
    verifiedCacheTtlMs: ttlMs,
    verifiedCacheEntries: entries,
  });
  return { clock, revoked, tokens };
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    return (err as MusterError).code;
  }
  return 'accepted';
}

describe('verified token cache', () => {
  it('checks the signature of a repeated API or registration token once', async () => {
    const { tokens } = setup();
    const api = await tokens.mintApiToken({ role: 'operator', ttlSeconds: 3600 });
    const registration = await tokens.mintRegistrationToken({ ttlSeconds: 3600 });
    for (let i = 0; i < 5; i++) {
      expect((await tokens.verifyApiToken(api)).role).toBe('operator');
      expect((await tokens.verifyNodeToken(registration, NODE)).kind).toBe('registration');
    }
    expect(tokens.signatureChecks).toBe(2);
  });

  it('checks a token again once its cache time is over, and every time without a cache', async () => {
    const { clock, tokens } = setup(1_000);
    const api = await tokens.mintApiToken({ role: 'viewer', ttlSeconds: 3600 });
    await tokens.verifyApiToken(api);
    clock.ms += 1_001;
    await tokens.verifyApiToken(api);
    expect(tokens.signatureChecks).toBe(2);

    const uncached = setup(0).tokens;
    const token = await uncached.mintApiToken({ role: 'viewer', ttlSeconds: 3600 });
    await uncached.verifyApiToken(token);
    await uncached.verifyApiToken(token);
    expect(uncached.signatureChecks).toBe(2);
  });

  it('still refuses a cached token past its expiry, and a revoked one at once', async () => {
    const { clock, revoked, tokens } = setup();
    const api = await tokens.mintApiToken({ role: 'admin', ttlSeconds: 10 });
    const registration = await tokens.mint({ role: 'node', ttlSeconds: 3600 });
    await tokens.verifyApiToken(api);
    await tokens.verifyNodeToken(registration.token, NODE);

    revoked.add(registration.info.jti);
    expect(await code(tokens.verifyNodeToken(registration.token, NODE))).toBe('token_revoked');
    clock.ms += 11_000;
    expect(await code(tokens.verifyApiToken(api))).toBe('token_expired');
  });

  it('applies the hostname and node type binding of a cached registration token on every use', async () => {
    const { tokens } = setup();
    const bound = await tokens.mintRegistrationToken({ ttlSeconds: 3600, sub: 'runner-1', nodeType: 'linux' });
    await tokens.verifyNodeToken(bound, NODE);
    expect(await code(tokens.verifyNodeToken(bound, { hostname: 'runner-2', nodeType: 'linux' }))).toBe('forbidden');
    expect(await code(tokens.verifyNodeToken(bound, { hostname: 'runner-1', nodeType: 'mac' }))).toBe('forbidden');
    // A registration token never stands in for an API token, cached or not.
    expect(await code(tokens.verifyApiToken(bound))).toBe('auth_failed');
  });

  it('keeps no session tokens and holds at most its bound', async () => {
    const { tokens } = setup(60_000, 2);
    const session = await tokens.mintSessionToken('node-1', 3600);
    await tokens.verifyNodeToken(session.token, { ...NODE, resumeNodeId: 'node-1' });
    await tokens.verifyNodeToken(session.token, { ...NODE, resumeNodeId: 'node-1' });
    expect(tokens.signatureChecks).toBe(2);

    const api = await Promise.all([1, 2, 3].map(() => tokens.mintApiToken({ role: 'viewer', ttlSeconds: 3600 })));
    for (const token of api) await tokens.verifyApiToken(token);
    const before = tokens.signatureChecks;
    await tokens.verifyApiToken(api[0]!); // evicted: the oldest of three with room for two
    await tokens.verifyApiToken(api[2]!); // kept
    expect(tokens.signatureChecks).toBe(before + 1);
  });
});
