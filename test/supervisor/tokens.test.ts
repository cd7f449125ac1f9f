import { describe, it, expect } from 'vitest';
import { SignJWT, decodeJwt } from 'jose';
import type { JWTPayload } from 'jose';
import { MusterError } from '../../protocol/errors.js';
import { TokenAuthority } from '../../supervisor/tokens.js';
import type { ErrorCode } from '../../protocol/errors.js';

const SECRET = new TextEncoder().encode('test-secret-that-is-32-bytes-long!!');
const OTHER_SECRET = new TextEncoder().encode('another-secret-also-32-bytes-long!!');
// A frozen clock: every token below is minted and checked at this instant unless stated.
const T0 = new Date('2025-03-01T12:00:00Z');
const T0_SECONDS = T0.getTime() / 1000;
const NODE = { hostname: 'runner-1', nodeType: 'linux' };

function authority(at: Date = T0, secret: Uint8Array = SECRET): TokenAuthority {
  return new TokenAuthority(secret, { now: () => at });
}

function later(seconds: number): Date {
  return new Date(T0.getTime() + seconds * 1000);
}

async function rejection(promise: Promise<unknown>): Promise<MusterError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    return err as MusterError;
  }
  throw new Error('expected the token to be refused');
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode, token?: string): Promise<void> {
  const err = await rejection(promise);
  expect(err.code).toBe(code);
  expect(err.fatal).toBe(true);
  if (token !== undefined && token.length > 8) {
    expect(err.message).not.toContain(token);
    for (const part of token.split('.')) if (part.length > 8) expect(err.message).not.toContain(part);
  }
}

/** Signs arbitrary claims with jose directly, bypassing TokenAuthority's minting rules. */
async function handSigned(
  claims: JWTPayload,
  options: { key?: Uint8Array; alg?: string; nbf?: number; exp?: number } = {},
): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? 'HS256' })
    .setIssuedAt(T0_SECONDS)
    .setExpirationTime(options.exp ?? T0_SECONDS + 3600);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(options.key ?? SECRET);
}

const REGISTER_CLAIMS = { iss: 'muster', aud: 'muster-node', scope: 'node:register', jti: 'j-1' };

function base64url(value: object | string): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

describe('TokenAuthority round trips', () => {
  it('mints and verifies a registration token with its claims', async () => {
    const tokens = authority();
    const token = await tokens.mintRegistrationToken({ ttlSeconds: 3600, sub: 'runner-1', nodeType: 'linux' });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({
      iss: 'muster',
      aud: 'muster-node',
      scope: 'node:register',
      sub: 'runner-1',
      node_type: 'linux',
      iat: T0_SECONDS,
      exp: T0_SECONDS + 3600,
    });
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    await expect(tokens.verifyNodeToken(token, NODE)).resolves.toEqual({
      kind: 'registration',
      jti: claims.jti,
      sub: 'runner-1',
      nodeType: 'linux',
    });
  });

  it('accepts an unbound registration token from any host and gives each token its own jti', async () => {
    const tokens = authority();
    const a = await tokens.mintRegistrationToken({ ttlSeconds: 60 });
    const b = await tokens.mintRegistrationToken({ ttlSeconds: 60 });
    expect(decodeJwt(a).jti).not.toBe(decodeJwt(b).jti);
    const verified = await tokens.verifyNodeToken(a, { hostname: 'anything', nodeType: 'mac' });
    expect(verified.kind).toBe('registration');
    expect(verified.sub).toBeUndefined();
  });

  it('mints a session token bound to the node id and accepts it on resume', async () => {
    const tokens = authority();
    const { token, expiresAt } = await tokens.mintSessionToken('node-a', 86_400);
    expect(expiresAt.toISOString()).toBe(later(86_400).toISOString());
    expect(decodeJwt(token)).toMatchObject({ aud: 'muster-node', scope: 'node:session', sub: 'node-a' });
    const verified = await tokens.verifyNodeToken(token, { ...NODE, resumeNodeId: 'node-a' });
    expect(verified).toMatchObject({ kind: 'session', sub: 'node-a' });
    expect(verified.jti).toBe(decodeJwt(token).jti);
  });

  it('mints and verifies API tokens for each role', async () => {
    const tokens = authority();
    for (const role of ['viewer', 'operator', 'admin'] as const) {
      const token = await tokens.mintApiToken({ role, ttlSeconds: 600, sub: 'alice' });
      expect(decodeJwt(token)).toMatchObject({ aud: 'muster-api', role, iss: 'muster' });
      await expect(tokens.verifyApiToken(token)).resolves.toMatchObject({ role, sub: 'alice' });
    }
  });

  it('accepts a hand-signed token with the same secret and claims (interoperability)', async () => {
    const token = await handSigned({ ...REGISTER_CLAIMS, sub: 'runner-1' });
    await expect(authority().verifyNodeToken(token, NODE)).resolves.toMatchObject({ kind: 'registration', jti: 'j-1' });
  });
});

describe('TokenAuthority refuses forged or misused tokens', () => {
  it('refuses a token signed by another secret', async () => {
    const token = await authority(T0, OTHER_SECRET).mintRegistrationToken({ ttlSeconds: 60 });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses an HS256 token hand-signed with a different key', async () => {
    const token = await handSigned(REGISTER_CLAIMS, { key: new Uint8Array(32).fill(7) });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses a tampered payload under a valid signature', async () => {
    const token = await authority().mintApiToken({ role: 'viewer', ttlSeconds: 60 });
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as JWTPayload;
    const forged = [header, base64url({ ...claims, role: 'admin' }), signature].join('.');
    await expectCode(authority().verifyApiToken(forged), 'auth_failed', forged);
  });

  it('refuses alg none', async () => {
    const claims = { ...REGISTER_CLAIMS, iat: T0_SECONDS, exp: T0_SECONDS + 3600 };
    for (const token of [
      `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url(claims)}.`,
      `${base64url({ alg: 'none' })}.${base64url(claims)}`,
      `${base64url({ alg: 'NONE' })}.${base64url(claims)}.`,
    ]) {
      await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
    }
  });

  it('refuses another HMAC algorithm even with the right secret', async () => {
    const token = await handSigned(REGISTER_CLAIMS, { alg: 'HS512' });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('reports an expired token as token_expired', async () => {
    const token = await authority().mintRegistrationToken({ ttlSeconds: 60 });
    await expectCode(authority(later(60 + 31)).verifyNodeToken(token, NODE), 'token_expired', token);
    const api = await authority().mintApiToken({ role: 'admin', ttlSeconds: 60 });
    await expectCode(authority(later(3600)).verifyApiToken(api), 'token_expired', api);
  });

  it('accepts a token expired within the 30 s leeway, and honours a custom leeway', async () => {
    const token = await authority().mintRegistrationToken({ ttlSeconds: 60 });
    await expect(authority(later(60 + 29)).verifyNodeToken(token, NODE)).resolves.toMatchObject({ kind: 'registration' });
    const strict = new TokenAuthority(SECRET, { now: () => later(61), clockToleranceSeconds: 0 });
    await expectCode(strict.verifyNodeToken(token, NODE), 'token_expired');
  });

  it('refuses a token that is not yet valid as auth_failed', async () => {
    const token = await handSigned(REGISTER_CLAIMS, { nbf: T0_SECONDS + 300 });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
    // Within the leeway of nbf it is fine.
    const soon = await handSigned(REGISTER_CLAIMS, { nbf: T0_SECONDS + 20 });
    await expect(authority().verifyNodeToken(soon, NODE)).resolves.toMatchObject({ kind: 'registration' });
  });

  it('refuses a token without exp', async () => {
    const token = await new SignJWT(REGISTER_CLAIMS).setProtectedHeader({ alg: 'HS256' }).sign(SECRET);
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses the wrong audience', async () => {
    const token = await handSigned({ ...REGISTER_CLAIMS, aud: 'someone-else' });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses the wrong or a missing issuer', async () => {
    const wrong = await handSigned({ ...REGISTER_CLAIMS, iss: 'evil' });
    await expectCode(authority().verifyNodeToken(wrong, NODE), 'auth_failed', wrong);
    const { iss: _iss, ...noIssuer } = REGISTER_CLAIMS;
    const missing = await handSigned(noIssuer);
    await expectCode(authority().verifyNodeToken(missing, NODE), 'auth_failed', missing);
    // A control plane configured with another issuer refuses ours.
    const ours = await authority().mintRegistrationToken({ ttlSeconds: 60 });
    const other = new TokenAuthority(SECRET, { now: () => T0, issuer: 'other-plane' });
    await expectCode(other.verifyNodeToken(ours, NODE), 'auth_failed', ours);
  });

  it('refuses a node token with a wrong or missing scope', async () => {
    for (const claims of [{ ...REGISTER_CLAIMS, scope: 'node:admin' }, { ...REGISTER_CLAIMS, scope: undefined }]) {
      const token = await handSigned(claims);
      await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
    }
  });

  it('refuses an admin API token used to register', async () => {
    const token = await authority().mintApiToken({ role: 'admin', ttlSeconds: 600 });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
    await expectCode(authority().verifyNodeToken(token, { ...NODE, resumeNodeId: 'node-a' }), 'auth_failed', token);
  });

  it('refuses node tokens on the API', async () => {
    const tokens = authority();
    const registration = await tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const { token: session } = await tokens.mintSessionToken('node-a', 600);
    await expectCode(tokens.verifyApiToken(registration), 'auth_failed', registration);
    await expectCode(tokens.verifyApiToken(session), 'auth_failed', session);
  });

  it('refuses an API token with an unknown or missing role', async () => {
    for (const role of ['root', undefined, 7]) {
      const token = await handSigned({ iss: 'muster', aud: 'muster-api', role });
      await expectCode(authority().verifyApiToken(token), 'auth_failed', token);
    }
  });

  it('forbids a registration token bound to another hostname or node type', async () => {
    const tokens = authority();
    const bound = await tokens.mintRegistrationToken({ ttlSeconds: 600, sub: 'runner-2' });
    await expectCode(tokens.verifyNodeToken(bound, NODE), 'forbidden', bound);
    const typed = await tokens.mintRegistrationToken({ ttlSeconds: 600, nodeType: 'windows' });
    await expectCode(tokens.verifyNodeToken(typed, NODE), 'forbidden', typed);
  });

  it("forbids another node's session token on resume, and a session token without resume", async () => {
    const tokens = authority();
    const { token } = await tokens.mintSessionToken('node-b', 600);
    await expectCode(tokens.verifyNodeToken(token, { ...NODE, resumeNodeId: 'node-a' }), 'forbidden', token);
    await expectCode(tokens.verifyNodeToken(token, NODE), 'forbidden', token);
  });

  it('refuses garbage as auth_failed without echoing it', async () => {
    const tokens = authority();
    for (const garbage of ['', 'not-a-jwt', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbi1ib2R5Ijp0cnVlfQ.c2lnbmF0dXJl', '...']) {
      await expectCode(tokens.verifyNodeToken(garbage, NODE), 'auth_failed', garbage);
      await expectCode(tokens.verifyApiToken(garbage), 'auth_failed', garbage);
    }
  });

  it('refuses a secret shorter than 32 bytes', () => {
    expect(() => new TokenAuthority(new Uint8Array(31))).toThrow(/32 bytes/);
  });
});
