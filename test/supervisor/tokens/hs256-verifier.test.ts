import { createHmac, createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { jwtVerify } from 'jose';
import { MusterError } from '../../../protocol/errors.js';
import { hs256HeaderSegment } from '../../../supervisor/tokens/hs256-signer.js';
import { Hs256Verifier } from '../../../supervisor/tokens/hs256-verifier.js';
import { hmacKeyId } from '../../../supervisor/tokens/token-keys.js';
import { TokenAuthority, type NodeTokenExpectation } from '../../../supervisor/tokens/tokens.js';

const SECRET = new TextEncoder().encode('test-secret-that-is-32-bytes-long!!');
const PREVIOUS = new TextEncoder().encode('previous-secret-that-is-32-bytes!!');
const STRANGER = new TextEncoder().encode('another-secret-also-32-bytes-long!!');
// A frozen clock: every token is checked at this instant.
const T0 = new Date('2025-03-01T12:00:00Z');
const NOW = T0.getTime() / 1000;
const TOLERANCE = 30;

const b64 = (bytes: Buffer | string): string => Buffer.from(bytes).toString('base64url');

/** A token with any header and claims text, signed with `key`, then perhaps tampered with. */
interface Forged {
  header: string;
  claims: string | Buffer;
  key: Uint8Array;
  tamper: 'none' | 'signature' | 'claims' | 'short' | 'alias';
}

function forge(f: Forged): string {
  const input = `${f.header}.${b64(f.claims)}`;
  const signature = createHmac('sha256', f.key).update(input).digest('base64url');
  if (f.tamper === 'signature') return `${input}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
  if (f.tamper === 'short') return `${input}.${signature.slice(0, -1)}`;
  // A character whose low byte is the real one (latin1 would read them alike).
  if (f.tamper === 'alias') return `${input}.${String.fromCharCode(0x100 + signature.charCodeAt(0))}${signature.slice(1)}`;
  if (f.tamper === 'claims') return `${f.header}.${b64(Buffer.concat([Buffer.from(f.claims), Buffer.from(' ')]))}.${signature}`;
  return `${input}.${signature}`;
}

/** Seconds around now, dense near the edges that matter (the tolerance). */
const nearNow = fc.oneof(
  fc.integer({ min: -TOLERANCE - 3, max: -TOLERANCE + 3 }),
  fc.integer({ min: TOLERANCE - 3, max: TOLERANCE + 3 }),
  fc.integer({ min: -100_000, max: 100_000 }),
);
const numericClaim = fc.oneof(
  { weight: 8, arbitrary: nearNow.map((d) => NOW + d) },
  { weight: 1, arbitrary: nearNow.map((d) => NOW + d + 0.5) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>('soon', null, true, [NOW + 60], Number.POSITIVE_INFINITY) },
);

const claimsArb = fc.record(
  {
    iss: fc.constantFrom<unknown>('muster', 'muster', 'elsewhere', 7),
    aud: fc.constantFrom<unknown>('muster-node', 'muster-node', 'muster-api', ['muster-node', 'x'], ['x'], [], 3),
    exp: numericClaim,
    nbf: numericClaim,
    iat: numericClaim,
    sub: fc.constantFrom<unknown>('node-1', 'runner-1', 5),
    jti: fc.uuid(),
    scope: fc.constantFrom<unknown>('node:session', 'node:register', 'other'),
    reg_jti: fc.constantFrom<unknown>('r-1', 9),
    role: fc.constantFrom<unknown>('operator', 'root'),
  },
  { requiredKeys: ['jti'] },
);

const kid = hmacKeyId(SECRET);
const headerArb = fc.constantFrom(
  hs256HeaderSegment(kid),
  hs256HeaderSegment(kid),
  hs256HeaderSegment(hmacKeyId(PREVIOUS)),
  hs256HeaderSegment(hmacKeyId(STRANGER)),
  b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' })),
  b64(JSON.stringify({ typ: 'JWT', alg: 'HS256', kid })),
  b64(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid, crit: ['exp'] })),
  b64(JSON.stringify({ alg: 'none', typ: 'JWT', kid })),
);

/** Claims a token of ours has, mostly valid: the edges (expiry, `nbf`) and the scopes vary. */
const plausibleClaimsArb = fc.record(
  {
    iss: fc.constant('muster'),
    aud: fc.constantFrom('muster-node', 'muster-api'),
    jti: fc.uuid(),
    iat: fc.integer({ min: -100_000, max: 0 }).map((d) => NOW + d),
    exp: nearNow.map((d) => NOW + d),
    nbf: nearNow.map((d) => NOW + d),
    sub: fc.constantFrom('node-1', 'runner-1'),
    scope: fc.constantFrom('node:session', 'node:register'),
    reg_jti: fc.constant('r-1'),
    role: fc.constantFrom('operator', 'root'),
  },
  { requiredKeys: ['iss', 'aud', 'jti', 'iat', 'exp'] },
);

const claimsTextArb = fc.oneof(
  { weight: 6, arbitrary: plausibleClaimsArb.map((c) => JSON.stringify(c)) },
  { weight: 6, arbitrary: claimsArb.map((c) => JSON.stringify(c)) },
  { weight: 1, arbitrary: fc.constantFrom('[1,2]', '42', 'null', '{"iss":', '\uFEFF{"iss":"muster"}') },
  { weight: 1, arbitrary: fc.constant(Buffer.from([0x7b, 0xff, 0x7d])) },
);

const forgedArb = fc.oneof(
  // Tokens of ours as the plane signs them, around their edges.
  fc.record({
    header: fc.constant(hs256HeaderSegment(kid)),
    claims: plausibleClaimsArb.map((c) => JSON.stringify(c)),
    key: fc.constant(SECRET),
    tamper: fc.constant<Forged['tamper']>('none'),
  }),
  fc.record({
    header: headerArb,
    claims: claimsTextArb,
    key: fc.constantFrom(SECRET, SECRET, SECRET, PREVIOUS, STRANGER),
    tamper: fc.constantFrom<Forged['tamper']>('none', 'none', 'none', 'signature', 'claims', 'short', 'alias'),
  }),
);

function authority(nativeHs256: boolean): TokenAuthority {
  return new TokenAuthority(SECRET, { now: () => T0, previousSecrets: [PREVIOUS], clockToleranceSeconds: TOLERANCE, nativeHs256 });
}

type Verdict = { ok: true; value: unknown } | { ok: false; code: string; message: string };

async function verdict(run: () => Promise<unknown>): Promise<Verdict> {
  try {
    return { ok: true, value: await run() };
  } catch (err) {
    if (!(err instanceof MusterError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
}

describe('Hs256Verifier', () => {
  const verifier = new Hs256Verifier();
  verifier.add(createSecretKey(SECRET), kid);
  verifier.add(createSecretKey(PREVIOUS), hmacKeyId(PREVIOUS));
  const expected = { issuer: 'muster', audience: 'muster-node', toleranceSeconds: TOLERANCE, nowMs: T0.getTime() };

  it('accepts only what jose accepts, with the same claims, and every valid token of ours', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(forgedArb, async (f) => {
        const token = forge(f);
        const ours = verifier.verify(token, expected);
        // The key the header names, as the plane's key ring resolves it.
        const named = (header: { kid?: unknown }): Uint8Array => (header.kid === hmacKeyId(PREVIOUS) ? PREVIOUS : header.kid === hmacKeyId(STRANGER) ? STRANGER : SECRET);
        const jose = await jwtVerify(token, named, {
          algorithms: ['HS256'],
          issuer: 'muster',
          audience: 'muster-node',
          clockTolerance: TOLERANCE,
          currentDate: T0,
          requiredClaims: ['exp'],
        }).then(
          (r) => r,
          () => undefined,
        );
        if (ours !== undefined) {
          accepted++;
          expect(jose?.payload).toEqual(ours);
        }
        // Ours and valid: the fast path must take it (otherwise a resume pays for jose).
        const oursHeader = f.header === hs256HeaderSegment(kid) || f.header === hs256HeaderSegment(hmacKeyId(PREVIOUS));
        if (jose !== undefined && oursHeader) expect(ours).toEqual(jose.payload);
      }),
      { numRuns: 500 },
    );
    // The generator must reach both sides.
    expect(accepted).toBeGreaterThan(10);
  });

  it('leaves a token of a key it does not hold to jose', () => {
    const token = forge({ header: hs256HeaderSegment(hmacKeyId(STRANGER)), claims: JSON.stringify({ iss: 'muster', aud: 'muster-node', exp: NOW + 60 }), key: STRANGER, tamper: 'none' });
    expect(verifier.verify(token, expected)).toBeUndefined();
  });
});

describe('TokenAuthority with and without the native HS256 check', () => {
  it('gives the same verdict (claims, or error code and message) on forged, tampered and expired tokens', async () => {
    const native = authority(true);
    const jose = authority(false);
    const expectations = fc.constantFrom<NodeTokenExpectation>(
      { hostname: 'runner-1', nodeType: 'linux' },
      { hostname: 'runner-1', nodeType: 'linux', resumeNodeId: 'node-1' },
    );
    await fc.assert(
      fc.asyncProperty(forgedArb, expectations, fc.boolean(), async (f, node, api) => {
        const token = forge(f);
        if (api) expect(await verdict(() => native.verifyApiToken(token))).toEqual(await verdict(() => jose.verifyApiToken(token)));
        else expect(await verdict(() => native.verifyNodeToken(token, node))).toEqual(await verdict(() => jose.verifyNodeToken(token, node)));
      }),
      { numRuns: 500 },
    );
    expect(native.nativeSignatureChecks).toBeGreaterThan(10);
    expect(jose.nativeSignatureChecks).toBe(0);
  });

  it('verifies the session tokens it mints without jose and still refuses them once expired', async () => {
    let at = T0;
    const tokens = new TokenAuthority(SECRET, { now: () => at, clockToleranceSeconds: TOLERANCE });
    const minted = await tokens.mintSessionToken('node-1', 60, 'r-1');
    const resume = { hostname: 'runner-1', nodeType: 'linux', resumeNodeId: 'node-1' };
    await expect(tokens.verifyNodeToken(minted.token, resume)).resolves.toEqual({ kind: 'session', jti: minted.jti, sub: 'node-1', registrationJti: 'r-1' });
    expect(tokens.nativeSignatureChecks).toBe(1);
    at = new Date(T0.getTime() + (60 + TOLERANCE) * 1000);
    await expect(tokens.verifyNodeToken(minted.token, resume)).rejects.toMatchObject({ code: 'token_expired' });
  });
});
