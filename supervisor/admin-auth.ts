// Bearer-token checks of the admin HTTP API: `viewer` reads, `operator` also submits, cancels
// and drains, `admin` can do everything (PROTOCOL.md section 7).
import type { FastifyRequest } from 'fastify';
import { HttpError } from './admin-errors.js';
import type { ApiRole, TokenAuthority } from './tokens.js';

const RANK: Record<ApiRole, number> = { viewer: 0, operator: 1, admin: 2 };

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;

/** An `onRequest` hook that lets a request through only with a valid token of `role` or above. */
export function requireRole(tokens: TokenAuthority, role: ApiRole): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : BEARER.exec(header);
    if (match === null) throw new HttpError(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    // A MusterError (auth_failed, token_expired) maps to 401 in toHttpError.
    const granted = await tokens.verifyApiToken(match[1] as string);
    if (RANK[granted.role] < RANK[role]) {
      throw new HttpError(403, 'forbidden', `this needs the ${role} role; the token has ${granted.role}`);
    }
  };
}
