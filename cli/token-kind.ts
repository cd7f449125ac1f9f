// Which kind of Muster token a string is, read from its claims without verifying it, so that a
// token handed to the wrong command is named at once rather than refused by the plane as
// `auth_failed` (and counted against the host's failed-login allowance).
import { decodeJwt } from 'jose';

export type TokenKind = 'registration' | 'session' | 'api' | 'unknown';

export function tokenKind(token: string): TokenKind {
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(token);
  } catch {
    return 'unknown';
  }
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (audiences.includes('muster-api')) return 'api';
  if (claims.scope === 'node:register') return 'registration';
  if (claims.scope === 'node:session') return 'session';
  return 'unknown';
}

/** Throws when `token` is plainly a node token: API commands need an API role. */
export function checkApiToken(token: string): void {
  const kind = tokenKind(token);
  if (kind === 'registration' || kind === 'session') {
    throw new Error(`this is a node ${kind} token; API commands need a viewer, operator or admin token (muster token create --role viewer|operator|admin)`);
  }
}

/** Throws when `token` is plainly an API token: the agent registers with a node registration token. */
export function checkAgentToken(token: string): void {
  if (tokenKind(token) === 'api') {
    throw new Error('this is an admin API token; the agent needs a node registration token (muster token create --role node)');
  }
}
