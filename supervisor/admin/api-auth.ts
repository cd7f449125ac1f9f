// Bearer-token checks of the admin HTTP API: `viewer` reads, `operator` also submits, cancels
// and drains, `admin` can do everything (PROTOCOL.md section 7).
import type { FastifyRequest } from 'fastify';
import { HttpError } from './api-errors.js';
import type { ApiRole, TokenAuthority, VerifiedApiToken } from '../tokens/tokens.js';

const RANK: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/** The token each request was let through with, for per-token rate limits and the audit log. */
const grants = new WeakMap<FastifyRequest, VerifiedApiToken>();
/** Requests that presented a token some other way than the header (the events cookie): a failure there is a guess too. */
const presented = new WeakSet<FastifyRequest>();
/** Every hook made by `requireRole`, so api-access.ts can refuse a `/v1` route registered without one. */
const roleHooks = new WeakSet<object>();

/** The verified token of `request` (its role may have been too low); undefined before or without a role check. */
export function grantOf(request: FastifyRequest): VerifiedApiToken | undefined {
  return grants.get(request);
}

/** Whether `request` carried a token in a cookie that a role check read (api-access.ts counts its failures). */
export function presentedToken(request: FastifyRequest): boolean {
  return presented.has(request);
}

/** Whether `hook` is a role check made by `requireRole`. */
export function isRoleCheck(hook: unknown): boolean {
  return typeof hook === 'function' && roleHooks.has(hook);
}

export interface RoleOptions {
  /**
   * Also take the token from this cookie when there is no `Authorization` header: only for
   * `GET /v1/events`, which a browser's EventSource opens without letting the page set headers.
   */
  cookie?: string;
}

/** An `onRequest` hook that lets a request through only with a valid token of `role` or above. */
export function requireRole(tokens: TokenAuthority, role: ApiRole, options: RoleOptions = {}): (request: FastifyRequest) => Promise<void> {
  const hook = async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : BEARER.exec(header);
    const token = match?.[1] ?? (header === undefined && options.cookie !== undefined ? cookieOf(request, options.cookie) : undefined);
    if (token === undefined) throw new HttpError(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    if (match === null) presented.add(request);
    // A MusterError (auth_failed, token_expired) maps to 401 in toHttpError.
    const granted = await tokens.verifyApiToken(token);
    // Kept before the role check too: a refusal is audited with the token's jti and role.
    grants.set(request, granted);
    if (RANK[granted.role] < RANK[role]) {
      throw new HttpError(403, 'forbidden', `this needs the ${role} role; the token has ${granted.role}`);
    }
  };
  roleHooks.add(hook);
  return hook;
}

/** The value of cookie `name` of the request, if it has one. */
function cookieOf(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value === '' ? undefined : value;
    }
  }
  return undefined;
}
