// The TokenStore contract: every token store (SQLite now, a cluster's later) runs this same
// suite, so the token registry, the admin API and the CLI rely on one behaviour.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TokenInfo, TokenStore } from '../../../supervisor/store/token-store.js';

const UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

export function tokenStoreContract(name: string, open: () => Promise<TokenStore> | TokenStore): void {
  describe(`TokenStore contract: ${name}`, () => {
    let store: TokenStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    describe('tokens and revocations', () => {
      const JTI_A = 'aaaaaaaa-0000-4000-8000-000000000001';
      const JTI_B = 'bbbbbbbb-0000-4000-8000-000000000002';
      const JTI_C = 'cccccccc-0000-4000-8000-000000000003';

      function token(jti: string, overrides: Partial<TokenInfo> = {}): TokenInfo {
        return {
          jti,
          role: 'node',
          sub: 'runner-1',
          node_type: 'linux',
          issued_at: '2030-01-01T00:00:00.000Z',
          expires_at: '2030-01-01T01:00:00.000Z',
          ...overrides,
        };
      }

      it('records minted tokens and lists them oldest first, without revocation fields', async () => {
        const api = token(JTI_B, { role: 'admin', sub: 'alice', issued_at: '2030-01-01T00:00:05.000Z' });
        delete api.node_type;
        const session = token(JTI_C, { role: 'session', issued_at: '2030-01-01T00:00:09.000Z' });
        delete session.node_type;
        await store.recordToken(token(JTI_A));
        await store.recordToken(api);
        await store.recordToken(session);
        expect(await store.listTokens()).toEqual([token(JTI_A), api, session]);
      });

      it('records a jti once: a second record changes nothing', async () => {
        await store.recordToken(token(JTI_A));
        await store.recordToken(token(JTI_A, { role: 'admin', sub: 'mallory' }));
        expect(await store.listTokens()).toEqual([token(JTI_A)]);
      });

      it('revokes a recorded token once, and lists it as revoked', async () => {
        await store.recordToken(token(JTI_A));
        await store.recordToken(token(JTI_B));
        expect(await store.isRevoked(JTI_A)).toBe(false);
        const first = await store.revokeToken(JTI_A, 'laptop stolen');
        expect(first).toMatchObject({ jti: JTI_A, reason: 'laptop stolen', expires_at: token(JTI_A).expires_at });
        expect(first.revoked_at).toMatch(UTC);
        expect(await store.revokeToken(JTI_A, 'again')).toEqual(first);
        expect(await store.isRevoked(JTI_A)).toBe(true);
        expect(await store.isRevoked(JTI_B)).toBe(false);
        const [a, b] = await store.listTokens();
        expect(a).toEqual({ ...token(JTI_A), revoked_at: first.revoked_at, revoke_reason: 'laptop stolen' });
        expect(b).toEqual(token(JTI_B));
      });

      it('revokes a jti it never recorded (a token minted elsewhere)', async () => {
        const revocation = await store.revokeToken(JTI_C, 'external');
        expect(revocation.expires_at).toBeUndefined();
        expect(await store.isRevoked(JTI_C)).toBe(true);
        expect(await store.listTokens()).toEqual([]);
      });

      it('hands out revocations in order after a cursor', async () => {
        const a = await store.revokeToken(JTI_A, 'one');
        const b = await store.revokeToken(JTI_B, 'two');
        expect(b.seq).toBeGreaterThan(a.seq);
        expect((await store.revokedSince(0)).map((r) => r.jti)).toEqual([JTI_A, JTI_B]);
        expect(await store.revokedSince(a.seq)).toEqual([b]);
        expect(await store.revokedSince(b.seq)).toEqual([]);
        await store.revokeToken(JTI_A, 'repeat');
        expect(await store.revokedSince(b.seq)).toEqual([]);
      });

      it('prunes expired tokens and their revocations, keeps the rest, and never reuses a seq', async () => {
        await store.recordToken(token(JTI_A, { expires_at: '2030-01-01T00:30:00.000Z' }));
        await store.recordToken(token(JTI_B, { expires_at: '2030-01-02T00:00:00.000Z' }));
        const old = await store.revokeToken(JTI_A, 'old');
        await store.revokeToken(JTI_C, 'unrecorded');
        expect(await store.pruneTokens('2030-01-01T12:00:00.000Z')).toBe(2);
        expect((await store.listTokens()).map((t) => t.jti)).toEqual([JTI_B]);
        expect(await store.isRevoked(JTI_A)).toBe(false);
        expect(await store.isRevoked(JTI_C)).toBe(true);
        const newest = (await store.revokedSince(0)).at(-1);
        const next = await store.revokeToken(JTI_B, 'new');
        expect(next.seq).toBeGreaterThan(Math.max(old.seq, newest?.seq ?? 0));
      });
    });
  });
}
