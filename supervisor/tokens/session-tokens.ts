// The tokens each registered node stands on, and the refresh of its session token.
// A session remembers the ids (`jti`) of the token it registered or resumed with, of the
// registration token its session descends from, and of every session token it was given, so a
// revocation of any of them finds it, and a `Deregister` can revoke its session tokens. Its session
// token is re-issued with `TokenRefresh` at two thirds of its life (one timer per session,
// cleared when the session goes).
import type { Logger } from 'pino';
import type { MessageData } from '../../protocol/messages.js';
import type { TokenInfo } from '../store/token-store.js';
import type { TokenAuthority } from './tokens.js';

/** What a refresh needs of a session (NodeSession in the plane). */
export interface RefreshableSession {
  send(type: 'TokenRefresh', data: MessageData<'TokenRefresh'>): void;
  readonly connection: { readonly isClosed: boolean };
}

/** What a session stands on when it registers. */
export interface SessionGrant {
  nodeId: string;
  /** Ids of the tokens the connection stands on: revoking any of them ends it. */
  tokenIds: readonly string[];
  /** The registration token the session descends from; carried into every refreshed token. */
  registrationJti?: string;
  /** The session token just given in `RegisterAck`. */
  session: { expiresAt: Date; info: TokenInfo };
}

export interface SessionTokensOptions {
  tokens: TokenAuthority;
  sessionTtlSeconds: number;
  /** Records each session token minted (for `muster token list`); nothing waits for it. */
  record: (info: TokenInfo) => unknown;
  logger: Logger;
}

interface Tracked {
  grant: SessionGrant;
  timer: NodeJS.Timeout | undefined;
}

/** Longest delay setTimeout takes; a later refresh is reached in several hops. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const REFRESH_AT = 2 / 3;

export class SessionTokens<S extends RefreshableSession> {
  readonly #options: SessionTokensOptions;
  readonly #tracked = new Map<S, Tracked>();
  readonly #byJti = new Map<string, Set<S>>();

  constructor(options: SessionTokensOptions) {
    this.#options = options;
  }

  /** Starts tracking a registered session: indexes its token ids, records its token, schedules the refresh. */
  track(session: S, grant: SessionGrant): void {
    this.forget(session);
    const tracked: Tracked = { grant, timer: undefined };
    this.#tracked.set(session, tracked);
    for (const jti of grant.tokenIds) this.#index(session, jti);
    void this.#options.record(grant.session.info);
    this.#schedule(session, tracked, grant.session.expiresAt);
  }

  /** Stops tracking (the session ended): clears its timer and its index entries. */
  forget(session: S): void {
    const tracked = this.#tracked.get(session);
    if (tracked === undefined) return;
    clearTimeout(tracked.timer);
    this.#tracked.delete(session);
    for (const jti of tracked.grant.tokenIds) {
      const sessions = this.#byJti.get(jti);
      sessions?.delete(session);
      if (sessions?.size === 0) this.#byJti.delete(jti);
    }
  }

  /** The live sessions that stand on `jti`. */
  sessionsWith(jti: string): S[] {
    return [...(this.#byJti.get(jti) ?? [])];
  }

  /** The token ids a session stands on (empty when not tracked). */
  tokenIdsOf(session: S): readonly string[] {
    return this.#tracked.get(session)?.grant.tokenIds ?? [];
  }

  /**
   * The ids of the session tokens a session stands on: the one it resumed with, the one its
   * RegisterAck gave and every refresh. Not its registration token, which registers afresh.
   * What `Deregister` revokes: a session that ended may not be resumed (empty when not tracked).
   */
  sessionTokenIdsOf(session: S): string[] {
    const grant = this.#tracked.get(session)?.grant;
    return grant === undefined ? [] : grant.tokenIds.filter((jti) => jti !== grant.registrationJti);
  }

  /** Clears every timer (the plane stops). */
  close(): void {
    for (const session of [...this.#tracked.keys()]) this.forget(session);
  }

  #index(session: S, jti: string): void {
    let sessions = this.#byJti.get(jti);
    if (sessions === undefined) this.#byJti.set(jti, (sessions = new Set()));
    sessions.add(session);
  }

  #schedule(session: S, tracked: Tracked, expiresAt: Date): void {
    const now = Date.now();
    const dueAt = now + Math.max(0, (expiresAt.getTime() - now) * REFRESH_AT);
    this.#arm(session, tracked, dueAt);
  }

  #arm(session: S, tracked: Tracked, dueAt: number): void {
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, dueAt - Date.now()));
    tracked.timer = setTimeout(() => {
      if (Date.now() < dueAt) this.#arm(session, tracked, dueAt);
      else void this.#refresh(session, tracked);
    }, delay);
    tracked.timer.unref();
  }

  async #refresh(session: S, tracked: Tracked): Promise<void> {
    const { tokens, sessionTtlSeconds, record, logger } = this.#options;
    const { nodeId, registrationJti } = tracked.grant;
    try {
      const minted = await tokens.mintSessionToken(nodeId, sessionTtlSeconds, registrationJti);
      // The session may have ended while the token was signed.
      if (this.#tracked.get(session) !== tracked) return;
      if (session.connection.isClosed) {
        this.forget(session);
        return;
      }
      tracked.grant = { ...tracked.grant, tokenIds: [...tracked.grant.tokenIds, minted.jti] };
      this.#index(session, minted.jti);
      session.send('TokenRefresh', { session_token: minted.token, session_expires_at: minted.expiresAt.toISOString() });
      void record(minted.info);
      this.#schedule(session, tracked, minted.expiresAt);
    } catch (err) {
      logger.error({ err, node_id: nodeId }, 'session token refresh failed');
    }
  }
}
