// The cluster's token store: minted tokens in KV bucket `muster-tokens` and revocations in
// `muster-revocations`, both keyed by `jti`, behind the TokenStore seam and its contract suite.
// Both writes are a KV `create`, so of two replicas recording (or revoking) one jti the first
// wins and the second changes nothing. A revocation's `seq` is the revision of its create: the
// bucket's stream sequence, which rises across replicas and is never handed out again (a pruned
// revocation is purged; a later one gets a higher revision). So `revokedSince(seq)` reads the
// revocations bucket's stream after `seq` and every replica learns every revocation in order.
// That read costs an ephemeral consumer; so that following revocations costs nothing while none
// is written, one long-lived KV watch of the revocations bucket (kv-watch-hint.ts: re-made after
// every reconnect, checked by a stream-info read now and then) says how far the bucket has moved
// (`revocationsHeard`), and the token registry reads only after it moved (token-registry.ts).
import { StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import type { Revocation, TokenInfo, TokenRecord, TokenStore } from '../store/token-store.js';
import { createOnce } from './kv-cas.js';
import { KvWatchHint } from './kv-watch-hint.js';
import { toClusterError } from './nats-unavailable.js';
import { readKvEntries } from './stream-read.js';

export interface KvTokenStoreOptions {
  nc: NatsConnection;
  /** Default `muster-tokens`. */
  tokensBucket?: string;
  /** Default `muster-revocations`. */
  revocationsBucket?: string;
  /** Default 1. */
  replicas?: number;
  /** JetStream request timeout; default 2000 ms. */
  timeoutMs?: number;
  /** How often the revocations watch is checked against its stream (one stream-info read); default 10,000 ms, 0: never. */
  watchCheckMs?: number;
}

const WATCH_CHECK_MS = 10_000;

/** A revocation as stored: its `seq` is the entry's revision, not part of the value. */
type StoredRevocation = Omit<Revocation, 'seq' | 'jti'>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
const parse = <T>(bytes: Uint8Array): T => JSON.parse(decoder.decode(bytes)) as T;
const now = (): string => new Date().toISOString();

export class KvTokenStore implements TokenStore {
  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly tokens: KV,
    private readonly revocations: KV,
    private readonly names: { tokens: string; revocations: string },
    private readonly heard: KvWatchHint,
  ) {}

  static async open(options: KvTokenStoreOptions): Promise<KvTokenStore> {
    const timeout = options.timeoutMs ?? 2_000;
    const js = jetstream(options.nc, { timeout });
    const jsm = await jetstreamManager(options.nc, { timeout });
    const kvm = new Kvm(js);
    const limits = { history: 1, replicas: options.replicas ?? 1, storage: StorageType.File, timeout };
    const names = { tokens: options.tokensBucket ?? 'muster-tokens', revocations: options.revocationsBucket ?? 'muster-revocations' };
    const [tokens, revocations] = await Promise.all([kvm.create(names.tokens, limits), kvm.create(names.revocations, limits)]);
    // Its entries matter only as a position: a read after it moved returns them.
    const heard = await KvWatchHint.start({
      nc: options.nc,
      kv: revocations,
      checkMs: options.watchCheckMs ?? WATCH_CHECK_MS,
      onEntry: () => {},
      onError: () => {}, // the next reconnect or check makes it again; the registry's reconcile reads anyway
    });
    return new KvTokenStore(js, jsm, tokens, revocations, names, heard);
  }

  /** The revision of the revocations bucket the watch has reached (from memory: no NATS request). */
  revocationsHeard(): number {
    return this.heard.revision;
  }

  recordToken(token: TokenInfo): Promise<void> {
    return guard(async () => {
      await createOnce(this.tokens, token.jti, json(token));
    });
  }

  listTokens(): Promise<TokenRecord[]> {
    return guard(async () => {
      const [tokens, revoked] = await Promise.all([this.#entries<TokenInfo>(this.names.tokens), this.#entries<StoredRevocation>(this.names.revocations)]);
      const byJti = new Map(revoked.map((r) => [r.key, r.value]));
      tokens.sort((a, b) => (a.value.issued_at < b.value.issued_at ? -1 : a.value.issued_at > b.value.issued_at ? 1 : a.seq - b.seq));
      return tokens.map(({ value }) => {
        const record: TokenRecord = { ...value };
        const revocation = byJti.get(value.jti);
        if (revocation !== undefined) {
          record.revoked_at = revocation.revoked_at;
          record.revoke_reason = revocation.reason;
        }
        return record;
      });
    });
  }

  revokeToken(jti: string, reason: string): Promise<Revocation> {
    return guard(async () => {
      const token = await this.tokens.get(jti);
      const stored: StoredRevocation = { reason, revoked_at: now() };
      if (token !== null && token.operation === 'PUT') stored.expires_at = parse<TokenInfo>(token.value).expires_at;
      const revision = await createOnce(this.revocations, jti, json(stored));
      if (revision !== undefined) return { jti, ...stored, seq: revision };
      // Revoked before (here or on another replica): that first revocation stands.
      const first = await this.revocations.get(jti);
      if (first === null || first.operation !== 'PUT') throw new Error(`the revocation of ${jti} vanished while it was read`);
      return { jti, ...parse<StoredRevocation>(first.value), seq: first.revision };
    });
  }

  isRevoked(jti: string): Promise<boolean> {
    return guard(async () => (await this.revocations.get(jti))?.operation === 'PUT');
  }

  revokedSince(afterSeq: number): Promise<Revocation[]> {
    return guard(async () =>
      (await this.#entries<StoredRevocation>(this.names.revocations, afterSeq)).map(({ key, value, seq }) => ({ jti: key, ...value, seq })),
    );
  }

  pruneTokens(before: string): Promise<number> {
    return guard(async () => {
      const [tokens, revoked] = await Promise.all([this.#entries<TokenInfo>(this.names.tokens), this.#entries<StoredRevocation>(this.names.revocations)]);
      const expiredTokens = tokens.filter((t) => t.value.expires_at < before);
      // Revocations of unrecorded tokens have no expiry and are kept.
      const expiredRevocations = revoked.filter((r) => r.value.expires_at !== undefined && r.value.expires_at < before);
      await Promise.all([
        ...expiredTokens.map((t) => this.tokens.purge(t.key)),
        ...expiredRevocations.map((r) => this.revocations.purge(r.key)),
      ]);
      return expiredTokens.length + expiredRevocations.length;
    });
  }

  close(): Promise<void> {
    return this.heard.close();
  }

  /** The live values of a bucket (purge markers left out), in revision order, after `afterSeq`. */
  #entries<T>(bucket: string, afterSeq = 0): Promise<Array<{ key: string; value: T; seq: number }>> {
    return readKvEntries<T>(this.js, this.jsm, bucket, '>', afterSeq);
  }
}

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toClusterError(err, 'use the token store');
  }
}
