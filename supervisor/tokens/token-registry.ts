// Minted tokens and revocations, kept by the TokenStore seam, with the
// revoked ids also held in memory: every token check asks `isRevoked`, which must cost a set
// lookup, not a query. The set is loaded at start, grows on each revoke, and follows
// revocations other processes write to the same store (the CLI offline, later other replicas).
import type { Logger } from 'pino';
import { DEFAULTS } from '../config.js';
import type { Revocation, TokenInfo, TokenRecord, TokenStore } from '../store/token-store.js';
import type { MintAnswer } from '../admin/wire-types.js';
import type { MintRequest, TokenAuthority } from './tokens.js';

/** How long a token minted in a storm waits to be recorded with the others (`recordSoon`). */
export const RECORD_BATCH_MS = 50;

export interface TokenRegistryOptions {
  store: TokenStore;
  logger: Logger;
  /** Called once for each revocation learned after start, from this process or from the store. */
  onRevoked: (revocation: Revocation) => void;
  /** How often to read revocations written by others; 0: never. With a store that hears changes (`revocationsHeard`), a poll reads only when it heard one. */
  pollMs: number;
  /** With such a store, how often a poll reads anyway (its hint may have missed something); default config.ts's `revocationReconcileMs`. */
  reconcileMs?: number;
  /** Recorded tokens expired longer ago than this are forgotten (an expired token is refused anyway); default config.ts's. */
  keepExpiredMs?: number;
  /** How often they are forgotten; default config.ts's. */
  pruneIntervalMs?: number;
}

export class TokenRegistry {
  readonly #store: TokenStore;
  readonly #logger: Logger;
  readonly #onRevoked: (revocation: Revocation) => void;
  readonly #keepExpiredMs: number;
  readonly #revoked = new Set<string>();
  /**
   * Revoked here and being written: refused from the moment of the call, not from the end of
   * the store's write (a deregistered node must not resume in between). Kept if the write
   * fails: a revocation errs on the side of refusing.
   */
  readonly #revoking = new Set<string>();
  readonly #timers: NodeJS.Timeout[] = [];
  /** `seq` of the newest revocation read from the store. */
  #cursor = 0;
  /** The store's `revocationsHeard()` before the last read that succeeded; undefined: the store has no such hint. */
  #heardRead: number | undefined;
  readonly #reconcileMs: number;
  /** When (Date.now) the last read that succeeded started. */
  #readAt = 0;
  #syncing: Promise<void> | undefined;
  /** Minted tokens waiting to be recorded together (`recordSoon`), and the timer that writes them. */
  #unrecorded: TokenInfo[] = [];
  #recordTimer: NodeJS.Timeout | undefined;
  /** Settles once every record handed to the store so far is written. */
  #recorded: Promise<unknown> = Promise.resolve();

  private constructor(options: TokenRegistryOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#onRevoked = options.onRevoked;
    this.#keepExpiredMs = options.keepExpiredMs ?? DEFAULTS.tokenKeepExpiredMs;
    this.#reconcileMs = options.reconcileMs ?? DEFAULTS.revocationReconcileMs;
  }

  /** Loads every revocation, forgets long-expired tokens, and starts following the store. */
  static async open(options: TokenRegistryOptions): Promise<TokenRegistry> {
    const registry = new TokenRegistry(options);
    const heard = options.store.revocationsHeard?.();
    registry.#readAt = Date.now();
    for (const revocation of await options.store.revokedSince(0)) registry.#learn(revocation, false);
    registry.#heardRead = heard;
    await registry.#prune();
    if (options.pollMs > 0) registry.#every(options.pollMs, () => registry.#poll());
    registry.#every(options.pruneIntervalMs ?? DEFAULTS.tokenPruneIntervalMs, () => registry.#prune());
    return registry;
  }

  /** True when `jti` is revoked. Synchronous and cheap: called on every token check. */
  isRevoked(jti: string): boolean {
    return this.#revoked.has(jti) || this.#revoking.has(jti);
  }

  /** Records a minted token for `list`; a failure is logged, not thrown (the token is valid anyway). */
  async record(info: TokenInfo): Promise<void> {
    try {
      await this.#store.recordToken(info);
    } catch (err) {
      this.#logger.error({ err, jti: info.jti, role: info.role }, 'could not record a minted token');
    }
  }

  /**
   * Records a minted token a moment later (RECORD_BATCH_MS), with every other one minted
   * meanwhile: a registration storm mints a session token per node, and their records then
   * share a few transactions instead of each being one. Nothing waits on a record (the token
   * is valid without it); `list` and `close` write whatever is waiting first.
   */
  recordSoon(info: TokenInfo): void {
    this.#unrecorded.push(info);
    if (this.#recordTimer !== undefined) return;
    this.#recordTimer = setTimeout(() => void this.#recordWaiting(), RECORD_BATCH_MS);
    this.#recordTimer.unref();
  }

  async list(): Promise<TokenRecord[]> {
    await this.#recordWaiting();
    return this.#store.listTokens();
  }

  /** Revokes `jti` in the store, then at once here (`onRevoked` fires if it is new). */
  async revoke(jti: string, reason: string): Promise<Revocation> {
    this.#revoking.add(jti);
    const revocation = await this.#store.revokeToken(jti, reason);
    this.#learn(revocation, true);
    this.#revoking.delete(jti);
    return revocation;
  }

  /** Reads revocations written since the last read; one read at a time. */
  sync(): Promise<void> {
    this.#syncing ??= this.#readNew().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  /** Stops the housekeeping; the records still waiting are handed to the store, which commits them as it closes. */
  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.length = 0;
    void this.#recordWaiting();
  }

  /** Writes every waiting record, in one event-loop turn (so in one group commit); settles once all handed out so far are written. */
  #recordWaiting(): Promise<unknown> {
    clearTimeout(this.#recordTimer);
    this.#recordTimer = undefined;
    const waiting = this.#unrecorded;
    if (waiting.length > 0) {
      this.#unrecorded = [];
      this.#recorded = Promise.all([this.#recorded, ...waiting.map((info) => this.record(info))]);
    }
    return this.#recorded;
  }

  /** The timer's read: skipped while the store heard nothing new since the last read, unless a reconcile is due. */
  #poll(): Promise<void> {
    const heard = this.#store.revocationsHeard?.();
    const quiet = heard !== undefined && this.#heardRead !== undefined && heard <= this.#heardRead;
    if (quiet && Date.now() - this.#readAt < this.#reconcileMs) return Promise.resolve();
    return this.sync();
  }

  async #readNew(): Promise<void> {
    // What the store heard before the read is in the read: a revocation heard later is read next time.
    const heard = this.#store.revocationsHeard?.();
    const startedAt = Date.now();
    try {
      for (const revocation of await this.#store.revokedSince(this.#cursor)) this.#learn(revocation, true);
      this.#heardRead = heard;
      this.#readAt = startedAt;
    } catch (err) {
      this.#logger.warn({ err }, 'could not read revocations');
    }
  }

  #learn(revocation: Revocation, announce: boolean): void {
    this.#cursor = Math.max(this.#cursor, revocation.seq);
    if (this.#revoked.has(revocation.jti)) return;
    this.#revoked.add(revocation.jti);
    if (!announce) return;
    this.#logger.info({ jti: revocation.jti, reason: revocation.reason }, 'token revoked');
    this.#onRevoked(revocation);
  }

  async #prune(): Promise<void> {
    try {
      await this.#store.pruneTokens(new Date(Date.now() - this.#keepExpiredMs).toISOString());
    } catch (err) {
      this.#logger.warn({ err }, 'could not prune expired tokens');
    }
  }

  #every(ms: number, fn: () => Promise<void>): void {
    const timer = setInterval(() => void fn(), ms);
    // Housekeeping must not keep a process alive on its own.
    timer.unref();
    this.#timers.push(timer);
  }
}

/** What the admin API's token routes need from the plane. */
export interface TokenAdmin {
  /** Mints a registration or API token and records it. */
  mint(request: MintRequest): Promise<MintAnswer>;
  /** Every recorded token, oldest first, never the token itself. */
  list(): Promise<TokenRecord[]>;
  /** Revokes `jti` and disconnects every node that stands on it. */
  revoke(jti: string, reason: string): Promise<Revocation>;
}

export function tokenAdmin(tokens: TokenAuthority, registry: TokenRegistry): TokenAdmin {
  return {
    mint: async (request) => {
      const { token, info } = await tokens.mint(request);
      await registry.record(info);
      return { token, jti: info.jti, expires_at: info.expires_at };
    },
    list: () => registry.list(),
    revoke: (jti, reason) => registry.revoke(jti, reason),
  };
}
