import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SignJWT, jwtVerify } from 'jose';
import { Hs256Signer } from '../../../supervisor/tokens/hs256-signer.js';
import { hmacKeyId } from '../../../supervisor/tokens/token-keys.js';

const SECRET = new TextEncoder().encode('test-secret-that-is-32-bytes-long!!');
const KID = hmacKeyId(SECRET);

/** What tokens.ts mints, signed by jose in the order tokens.ts builds the claims. */
function joseSigned(claims: Record<string, unknown>, iss: string, aud: string, jti: string, iat: number, exp: number, sub?: string): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: KID })
    .setIssuer(iss)
    .setAudience(aud)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(exp);
  if (sub !== undefined) jwt.setSubject(sub);
  return jwt.sign(SECRET);
}

describe('Hs256Signer', () => {
  const signer = new Hs256Signer(createSecretKey(SECRET), KID);

  it('gives byte for byte the token jose signs for the same header and claims', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          scope: fc.constantFrom('node:session', 'node:register'),
          extra: fc.option(fc.string(), { nil: undefined }),
          iss: fc.string(),
          aud: fc.constantFrom('muster-node', 'muster-api'),
          jti: fc.uuid(),
          iat: fc.integer({ min: 0, max: 2 ** 31 }),
          ttl: fc.integer({ min: 1, max: 10 ** 7 }),
          sub: fc.option(fc.string(), { nil: undefined }),
        }),
        async (c) => {
          const claims: Record<string, unknown> = { scope: c.scope };
          if (c.extra !== undefined) claims.reg_jti = c.extra;
          const exp = c.iat + c.ttl;
          const payload: Record<string, unknown> = { ...claims, iss: c.iss, aud: c.aud, jti: c.jti, iat: c.iat, exp };
          if (c.sub !== undefined) payload.sub = c.sub;
          expect(signer.sign(payload)).toBe(await joseSigned(claims, c.iss, c.aud, c.jti, c.iat, exp, c.sub));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('signs tokens that jose verifies, and only with the same secret', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = signer.sign({ scope: 'node:session', iss: 'muster', aud: 'muster-node', jti: 'j-1', iat: now, exp: now + 60, sub: 'node-1' });
    const { payload, protectedHeader } = await jwtVerify(token, SECRET, { algorithms: ['HS256'], issuer: 'muster', audience: 'muster-node' });
    expect(protectedHeader).toEqual({ alg: 'HS256', typ: 'JWT', kid: KID });
    expect(payload.sub).toBe('node-1');
    const other = new TextEncoder().encode('another-secret-also-32-bytes-long!!');
    await expect(jwtVerify(token, other, { algorithms: ['HS256'] })).rejects.toThrow(/signature/);
  });
});
