// The KV token store against the TokenStore contract on a real nats-server, plus what only a
// cluster store promises: a revocation written by one replica is handed out by another's, and
// following revocations (the token registry's poll) costs no NATS request while none is written.
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Revocation, TokenStore } from '../../../supervisor/store/token-store.js';
import { TokenRegistry } from '../../../supervisor/tokens/token-registry.js';
import { KvTokenStore, type KvTokenStoreOptions } from '../../../supervisor/cluster/kv-token-store.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { tokenStoreContract } from '../store/token-store-contract.js';

let server: NatsServer;
const connections: NatsConnection[] = [];

beforeAll(async () => {
  server = await NatsServer.start();
});
afterAll(async () => {
  await Promise.all(connections.map((nc) => nc.close()));
  await server?.stop();
});

async function connection(): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url });
  connections.push(nc);
  return nc;
}

let opened = 0;
/** Fresh buckets, so each test starts empty on the one server. */
function freshNames(): Omit<KvTokenStoreOptions, 'nc'> {
  const n = `${process.pid}-${++opened}`;
  return { tokensBucket: `muster-tokens-${n}`, revocationsBucket: `muster-revocations-${n}` };
}

tokenStoreContract('KvTokenStore', async () => KvTokenStore.open({ nc: await connection(), ...freshNames() }));

describe('KvTokenStore across replicas', () => {
  const JTI = 'dddddddd-0000-4000-8000-000000000004';
  const OTHER = 'eeeeeeee-0000-4000-8000-000000000005';

  it("hands out a revocation written by one replica in the other's revokedSince, once", async () => {
    const names = freshNames();
    const a = await KvTokenStore.open({ nc: await connection(), ...names });
    const b = await KvTokenStore.open({ nc: await connection(), ...names });
    const seen = await b.revokedSince(0);
    expect(seen).toEqual([]);
    const revocation = await a.revokeToken(JTI, 'stolen');
    expect(await b.revokedSince(0)).toEqual([revocation]);
    expect(await b.isRevoked(JTI)).toBe(true);
    // The second replica revoking again gets the first revocation, and no new seq.
    expect(await b.revokeToken(JTI, 'again')).toEqual(revocation);
    const later = await b.revokeToken(OTHER, 'lost');
    expect(await a.revokedSince(revocation.seq)).toEqual([later]);
  });

  it('records a jti once when two replicas race to record it', async () => {
    const names = freshNames();
    const a = await KvTokenStore.open({ nc: await connection(), ...names });
    const b = await KvTokenStore.open({ nc: await connection(), ...names });
    const token = { jti: JTI, role: 'node' as const, issued_at: '2030-01-01T00:00:00.000Z', expires_at: '2030-01-01T01:00:00.000Z' };
    await Promise.all([a.recordToken({ ...token, sub: 'a' }), b.recordToken({ ...token, sub: 'b' })]);
    const listed = await a.listTokens();
    expect(listed).toHaveLength(1);
    expect(await b.listTokens()).toEqual(listed);
  });
});

describe('following revocations', () => {
  const JTI = 'ffffffff-0000-4000-8000-000000000006';
  const POLL_MS = 50;

  /** Every JetStream API request on the server (a plain subscriber sees them), by subject. */
  async function jsApiRequests(): Promise<string[]> {
    const seen: string[] = [];
    const nc = await connection();
    nc.subscribe('$JS.API.>', { callback: (_err, msg) => void seen.push(msg.subject) });
    await nc.flush();
    return seen;
  }

  /** The store, with its hint's reads counted: one per poll of the registry (and one per read). */
  function counted(store: KvTokenStore): { store: TokenStore; looks: () => number } {
    let looks = 0;
    const spy: TokenStore = {
      recordToken: (token) => store.recordToken(token),
      listTokens: () => store.listTokens(),
      revokeToken: (jti, reason) => store.revokeToken(jti, reason),
      isRevoked: (jti) => store.isRevoked(jti),
      revokedSince: (after) => store.revokedSince(after),
      pruneTokens: (before) => store.pruneTokens(before),
      revocationsHeard: () => {
        looks += 1;
        return store.revocationsHeard();
      },
      close: () => store.close(),
    };
    return { store: spy, looks: () => looks };
  }

  it('polls without a NATS request (no consumer) while nothing is revoked, and reads once another replica revokes', async () => {
    const names = freshNames();
    const here = await KvTokenStore.open({ nc: await connection(), ...names });
    const other = await KvTokenStore.open({ nc: await connection(), ...names });
    const { store, looks } = counted(here);
    const learned: Revocation[] = [];
    const registry = await TokenRegistry.open({ store, logger: pino({ level: 'silent' }), pollMs: POLL_MS, onRevoked: (r) => learned.push(r) });
    try {
      const requests = await jsApiRequests();
      const from = looks();
      await expect.poll(() => looks() - from, { timeout: 10_000, interval: POLL_MS }).toBeGreaterThanOrEqual(10);
      expect(requests).toEqual([]);

      const revocation = await other.revokeToken(JTI, 'stolen');
      await expect.poll(() => learned, { timeout: 5_000, interval: 10 }).toEqual([revocation]);
      // The read that learned it (an ephemeral consumer of the revocations stream): what the quiet polls saved.
      expect(requests.filter((s) => s.startsWith('$JS.API.CONSUMER.CREATE.')).length).toBeGreaterThanOrEqual(1);
      expect(registry.isRevoked(JTI)).toBe(true);
    } finally {
      registry.close();
      await here.close();
      await other.close();
    }
  });
});
