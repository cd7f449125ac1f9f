import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import { MusterError } from '../../../protocol/errors.js';
import { loadConfig } from '../../../supervisor/config.js';
import { openJwks } from '../../../supervisor/tokens/jwks-source.js';
import { hmacKeyId, parseAlgorithms, type TokenAlgorithm } from '../../../supervisor/tokens/token-keys.js';
import { previousSecrets, tokenAuthorityFromConfig } from '../../../supervisor/tokens/token-setup.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import type { ErrorCode } from '../../../protocol/errors.js';

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
  options: { key?: Uint8Array; alg?: string; nbf?: number; exp?: number; kid?: unknown } = {},
): Promise<string> {
  const header: Record<string, unknown> = { alg: options.alg ?? 'HS256' };
  if ('kid' in options && options.kid !== undefined) header.kid = options.kid;
  const jwt = new SignJWT(claims)
    .setProtectedHeader(header as { alg: string })
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

describe('TokenAuthority key ids and rotation', () => {
  it('puts the current secret’s key id on every token it mints', async () => {
    const tokens = authority();
    expect(tokens.keyId).toBe(hmacKeyId(SECRET));
    expect(hmacKeyId(SECRET)).toMatch(/^[A-Za-z0-9_-]{11}$/);
    expect(hmacKeyId(OTHER_SECRET)).not.toBe(hmacKeyId(SECRET));
    for (const token of [
      await tokens.mintRegistrationToken({ ttlSeconds: 60 }),
      (await tokens.mintSessionToken('node-a', 60)).token,
      await tokens.mintApiToken({ role: 'viewer', ttlSeconds: 60 }),
    ]) {
      expect(decodeProtectedHeader(token)).toEqual({ alg: 'HS256', typ: 'JWT', kid: hmacKeyId(SECRET) });
    }
  });

  it('still verifies a token signed with a previous secret, and refuses it once that secret is removed', async () => {
    const old = await authority(T0, OTHER_SECRET).mintRegistrationToken({ ttlSeconds: 600 });
    const rotated = new TokenAuthority(SECRET, { now: () => T0, previousSecrets: [OTHER_SECRET] });
    await expect(rotated.verifyNodeToken(old, NODE)).resolves.toMatchObject({ kind: 'registration' });
    // New tokens are signed with the new secret only.
    const fresh = await rotated.mintRegistrationToken({ ttlSeconds: 600 });
    expect(decodeProtectedHeader(fresh).kid).toBe(hmacKeyId(SECRET));
    await expectCode(authority(T0, OTHER_SECRET).verifyNodeToken(fresh, NODE), 'auth_failed', fresh);
    // The rotation is over: the previous secret is gone, and so is every token it signed.
    await expectCode(authority().verifyNodeToken(old, NODE), 'auth_failed', old);
  });

  it('tries a token without kid against the current secret only', async () => {
    const rotated = new TokenAuthority(SECRET, { now: () => T0, previousSecrets: [OTHER_SECRET] });
    await expect(rotated.verifyNodeToken(await handSigned(REGISTER_CLAIMS), NODE)).resolves.toMatchObject({
      kind: 'registration',
    });
    const byPrevious = await handSigned(REGISTER_CLAIMS, { key: OTHER_SECRET });
    await expectCode(rotated.verifyNodeToken(byPrevious, NODE), 'auth_failed', byPrevious);
  });

  it('refuses a kid that names no key, even with a valid signature by another key', async () => {
    const token = await handSigned(REGISTER_CLAIMS, { kid: hmacKeyId(OTHER_SECRET) });
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses path tricks, huge and non-string kids as auth_failed', async () => {
    const kids: unknown[] = ['../../etc/passwd', '..', 'a/b', 'a\\b', '', 'x'.repeat(129), 'k'.repeat(100_000), 7, { a: 1 }, ['k'], null];
    for (const kid of kids) {
      const token = await handSigned(REGISTER_CLAIMS, { kid });
      const err = await rejection(authority().verifyNodeToken(token, NODE));
      expect(err.code).toBe('auth_failed');
      expect(err.message).toMatch(/key id/);
      expect(err.message.length).toBeLessThan(200);
    }
  });
});

describe('TokenAuthority with a JWKS (EdDSA, ES256)', () => {
  let dir: string;
  let ed: KeyPair;
  let es: KeyPair;
  let stranger: KeyPair;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-jwks-'));
    [ed, es, stranger] = await Promise.all([keyPair('EdDSA', 'ed-1'), keyPair('ES256', 'es-1'), keyPair('EdDSA', 'ed-1')]);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function jwksFile(name: string, keys: JWK[]): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, JSON.stringify({ keys }));
    return file;
  }

  function withJwks(file: string, options: { algorithms?: TokenAlgorithm[] } = {}): TokenAuthority {
    return new TokenAuthority(SECRET, { now: () => T0, jwks: openJwks(file, { timeoutMs: 2_000 }), ...options });
  }

  it('verifies EdDSA and ES256 tokens with the key their kid names', async () => {
    const tokens = withJwks(jwksFile('both.json', [ed.publicJwk, es.publicJwk]));
    for (const pair of [ed, es]) {
      const token = await pair.sign(REGISTER_CLAIMS);
      await expect(tokens.verifyNodeToken(token, NODE)).resolves.toMatchObject({ kind: 'registration', jti: 'j-1' });
    }
    // HS256 tokens of our own secret keep working beside the key set.
    await expect(tokens.verifyNodeToken(await handSigned(REGISTER_CLAIMS), NODE)).resolves.toMatchObject({
      kind: 'registration',
    });
  });

  it('refuses a token signed by a key that is not in the set, or naming a kid the set lacks', async () => {
    const tokens = withJwks(jwksFile('ed.json', [ed.publicJwk]));
    const forged = await stranger.sign(REGISTER_CLAIMS);
    await expectCode(tokens.verifyNodeToken(forged, NODE), 'auth_failed', forged);
    const unknownKid = await ed.sign(REGISTER_CLAIMS, 'ed-2');
    await expectCode(tokens.verifyNodeToken(unknownKid, NODE), 'auth_failed', unknownKid);
    // A kid of the right name on a key of another type (ES256 token, EdDSA key) matches nothing.
    const wrongType = await es.sign(REGISTER_CLAIMS, 'ed-1');
    await expectCode(tokens.verifyNodeToken(wrongType, NODE), 'auth_failed', wrongType);
  });

  it('picks up a key added to the file without a restart (rotation)', async () => {
    const file = jwksFile('rotating.json', [ed.publicJwk]);
    const tokens = withJwks(file);
    const next = await keyPair('ES256', 'es-2');
    const token = await next.sign(REGISTER_CLAIMS);
    await expectCode(tokens.verifyNodeToken(token, NODE), 'auth_failed', token);
    fs.writeFileSync(file, JSON.stringify({ keys: [ed.publicJwk, next.publicJwk] }));
    // mtime resolution may be coarse: make sure the change is visible as a change.
    const later = new Date(Date.now() + 5_000);
    fs.utimesSync(file, later, later);
    await expect(tokens.verifyNodeToken(token, NODE)).resolves.toMatchObject({ kind: 'registration' });
    await expect(tokens.verifyNodeToken(await ed.sign(REGISTER_CLAIMS), NODE)).resolves.toMatchObject({
      kind: 'registration',
    });
  });

  it('fetches the key set from a URL', async () => {
    const server = http.createServer((_request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ keys: [es.publicJwk] }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const tokens = new TokenAuthority(SECRET, {
        now: () => T0,
        jwks: openJwks(`http://127.0.0.1:${port}/jwks.json`, { timeoutMs: 2_000 }),
      });
      await expect(tokens.verifyNodeToken(await es.sign(REGISTER_CLAIMS), NODE)).resolves.toMatchObject({
        kind: 'registration',
      });
      const forged = await stranger.sign(REGISTER_CLAIMS, 'es-1');
      await expectCode(tokens.verifyNodeToken(forged, NODE), 'auth_failed', forged);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses tokens as auth_failed when the key set URL does not answer', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const tokens = new TokenAuthority(SECRET, { now: () => T0, jwks: openJwks(`http://127.0.0.1:${port}/jwks.json`, { timeoutMs: 2_000 }) });
    const token = await es.sign(REGISTER_CLAIMS);
    const err = await rejection(tokens.verifyNodeToken(token, NODE));
    expect(err.code).toBe('auth_failed');
    expect(err.message).toBe('the key set is unavailable');
  });

  it('refuses an HS256 token signed with the public key of the set (alg confusion)', async () => {
    const tokens = withJwks(jwksFile('confusion.json', [ed.publicJwk, es.publicJwk]));
    const pem = new TextEncoder().encode(await exportSPKI(ed.publicKey));
    const rawX = Buffer.from(ed.publicJwk.x as string, 'base64url');
    for (const key of [pem, rawX, new TextEncoder().encode(JSON.stringify(ed.publicJwk))]) {
      for (const kid of ['ed-1', undefined]) {
        const token = await handSigned(REGISTER_CLAIMS, { key, kid });
        await expectCode(tokens.verifyNodeToken(token, NODE), 'auth_failed', token);
      }
    }
  });

  it('never uses a symmetric key from the set, whatever the token claims', async () => {
    const secretJwk: JWK = { kty: 'oct', k: Buffer.from(OTHER_SECRET).toString('base64url'), kid: 'oct-1' };
    const tokens = withJwks(jwksFile('oct.json', [secretJwk, ed.publicJwk]));
    const token = await handSigned(REGISTER_CLAIMS, { key: OTHER_SECRET, kid: 'oct-1' });
    await expectCode(tokens.verifyNodeToken(token, NODE), 'auth_failed', token);
  });

  it('refuses EdDSA and ES256 without a key set, and any algorithm left out of the allow-list', async () => {
    const token = await ed.sign(REGISTER_CLAIMS);
    await expectCode(authority().verifyNodeToken(token, NODE), 'auth_failed', token);
    const hsOnly = withJwks(jwksFile('allow.json', [ed.publicJwk]), { algorithms: ['HS256'] });
    await expectCode(hsOnly.verifyNodeToken(token, NODE), 'auth_failed', token);
    await expect(hsOnly.verifyNodeToken(await handSigned(REGISTER_CLAIMS), NODE)).resolves.toMatchObject({
      kind: 'registration',
    });
  });

  it('refuses a key-set file that is not one, at start', () => {
    const file = path.join(dir, 'broken.json');
    fs.writeFileSync(file, '{"keys": 3}');
    expect(() => openJwks(file, { timeoutMs: 1_000 })).toThrow(/not a JSON Web Key Set/);
    fs.writeFileSync(file, 'nope');
    expect(() => openJwks(file, { timeoutMs: 1_000 })).toThrow(/not JSON/);
  });
});

describe('algorithm allow-list, leeway and previous secrets from configuration', () => {
  it('accepts HS256, EdDSA and ES256 only, and always needs HS256', () => {
    expect(parseAlgorithms('HS256,EdDSA,ES256')).toEqual(['HS256', 'EdDSA', 'ES256']);
    expect(parseAlgorithms(' HS256 , ES256 ')).toEqual(['HS256', 'ES256']);
    for (const bad of ['none', 'HS256,none', 'HS256,RS256', 'HS256,HS512', 'hs256']) {
      expect(() => parseAlgorithms(bad)).toThrow(/not accepted/);
    }
    expect(() => parseAlgorithms('EdDSA,ES256')).toThrow(/must include HS256/);
    expect(() => parseAlgorithms('')).toThrow(/must include HS256/);
  });

  it('takes the leeway from jwtClockToleranceSeconds (default 30)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-leeway-'));
    try {
      const config = (overrides: Record<string, string | number>) =>
        loadConfig({ env: {}, overrides: { dataDir, jwtSecret: new TextDecoder().decode(SECRET), ...overrides } });
      expect(config({}).jwtClockToleranceSeconds).toBe(30);
      const token = await authority().mintRegistrationToken({ ttlSeconds: 60 });
      const at = (seconds: number) => () => later(seconds);
      await expect(tokenAuthorityFromConfig(config({}), { now: at(85) }).verifyNodeToken(token, NODE)).resolves.toMatchObject({
        kind: 'registration',
      });
      await expectCode(tokenAuthorityFromConfig(config({}), { now: at(95) }).verifyNodeToken(token, NODE), 'token_expired');
      const strict = config({ jwtClockToleranceSeconds: 2 });
      await expectCode(tokenAuthorityFromConfig(strict, { now: at(63) }).verifyNodeToken(token, NODE), 'token_expired');
      const lax = config({ jwtClockToleranceSeconds: 120 });
      await expect(tokenAuthorityFromConfig(lax, { now: at(170) }).verifyNodeToken(token, NODE)).resolves.toMatchObject({
        kind: 'registration',
      });
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('verifies with jwtPreviousSecrets and refuses a short one without printing it', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-previous-'));
    try {
      const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
      const config = loadConfig({
        env: {},
        overrides: { dataDir, jwtSecret: text(SECRET), jwtPreviousSecrets: `${text(OTHER_SECRET)}, ` },
      });
      const old = await authority(T0, OTHER_SECRET).mintRegistrationToken({ ttlSeconds: 60 });
      await expect(tokenAuthorityFromConfig(config, { now: () => T0 }).verifyNodeToken(old, NODE)).resolves.toMatchObject({
        kind: 'registration',
      });
      expect(previousSecrets('')).toEqual([]);
      expect(() => previousSecrets(`${text(OTHER_SECRET)},short-secret-value`)).toThrow(/entry 2 must be at least 32 bytes/);
      try {
        previousSecrets('short-secret-value');
      } catch (err) {
        expect((err as Error).message).not.toContain('short-secret-value');
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('TokenAuthority and revocation', () => {
  function withRevoked(...jtis: string[]): TokenAuthority {
    const revoked = new Set(jtis);
    return new TokenAuthority(SECRET, { now: () => T0, isRevoked: (jti) => revoked.has(jti) });
  }

  it('refuses a revoked registration or API token as token_revoked', async () => {
    const registration = await handSigned({ ...REGISTER_CLAIMS, jti: 'gone' });
    await expectCode(withRevoked('gone').verifyNodeToken(registration, NODE), 'token_revoked', registration);
    const api = await handSigned({ iss: 'muster', aud: 'muster-api', role: 'admin', jti: 'gone' });
    await expectCode(withRevoked('gone').verifyApiToken(api), 'token_revoked', api);
    await expect(withRevoked('other').verifyApiToken(api)).resolves.toMatchObject({ role: 'admin', jti: 'gone' });
  });

  it('ties a session token to its registration token: revoking either refuses the resume', async () => {
    const { token, jti } = await authority().mintSessionToken('node-a', 600, 'reg-1');
    expect(decodeJwt(token)).toMatchObject({ reg_jti: 'reg-1', sub: 'node-a' });
    const resume = { ...NODE, resumeNodeId: 'node-a' };
    await expect(withRevoked().verifyNodeToken(token, resume)).resolves.toEqual({
      kind: 'session',
      jti,
      sub: 'node-a',
      registrationJti: 'reg-1',
    });
    await expectCode(withRevoked('reg-1').verifyNodeToken(token, resume), 'token_revoked', token);
    await expectCode(withRevoked(jti).verifyNodeToken(token, resume), 'token_revoked', token);
  });

  it('checks the signature before revocation: a forged token is auth_failed, not token_revoked', async () => {
    const forged = await handSigned({ ...REGISTER_CLAIMS, jti: 'gone' }, { key: OTHER_SECRET });
    await expectCode(withRevoked('gone').verifyNodeToken(forged, NODE), 'auth_failed', forged);
  });

  it('describes what it mints for the record, never with the token', async () => {
    const { token, info } = await authority().mint({ role: 'node', ttlSeconds: 600, sub: 'runner-1', nodeType: 'linux' });
    expect(info).toEqual({
      jti: decodeJwt(token).jti,
      role: 'node',
      sub: 'runner-1',
      node_type: 'linux',
      issued_at: T0.toISOString(),
      expires_at: later(600).toISOString(),
    });
    expect(JSON.stringify(info)).not.toContain(token.split('.')[2]);
    const api = await authority().mint({ role: 'operator', ttlSeconds: 60 });
    expect(api.info).toMatchObject({ role: 'operator', expires_at: later(60).toISOString() });
    await expect(authority().mint({ role: 'viewer', ttlSeconds: 60, nodeType: 'linux' })).rejects.toThrow(/node type/);
  });
});

interface KeyPair {
  publicKey: CryptoKey;
  publicJwk: JWK;
  sign(claims: JWTPayload, kid?: string): Promise<string>;
}

async function keyPair(alg: 'EdDSA' | 'ES256', kid: string): Promise<KeyPair> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid };
  return {
    publicKey,
    publicJwk,
    sign: (claims, signKid = kid) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg, kid: signKid })
        .setIssuedAt(T0_SECONDS)
        .setExpirationTime(T0_SECONDS + 3600)
        .sign(privateKey),
  };
}
