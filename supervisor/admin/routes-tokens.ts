// Token routes of the admin HTTP API (admin role only): mint and record a token, list the minted
// tokens (by `jti`, never the token itself), revoke one by `jti` (the plane then disconnects
// every node standing on it, and the API refuses it).
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { FastifyInstance } from 'fastify';
import { MusterError } from '../../protocol/errors.js';
import { DEFAULTS } from '../config.js';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import type { TokenAdmin } from '../tokens/token-registry.js';

/** The lifetimes the API mints: `tokenDefaultTtlSeconds` and `tokenMaxTtlSeconds` of config.ts. */
export interface TokenTtl {
  /** For a request without `ttl_seconds`; config.ts's default is `muster token create`'s. */
  defaultSeconds: number;
  /** The longest `ttl_seconds` granted. */
  maxSeconds: number;
}

const DEFAULT_TTL: TokenTtl = { defaultSeconds: DEFAULTS.tokenDefaultTtlSeconds, maxSeconds: DEFAULTS.tokenMaxTtlSeconds };

const Name = Type.String({ minLength: 1, maxLength: 255 });

export const MintTokenRequest = Type.Object({
  role: Type.Union([Type.Literal('node'), Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]),
  // Its upper bound is the plane's `maxSeconds`, checked apart: it is configured.
  ttl_seconds: Type.Optional(Type.Integer({ minimum: 1 })),
  sub: Type.Optional(Name),
  node_type: Type.Optional(Name),
});
export type MintTokenRequest = Static<typeof MintTokenRequest>;

const RevokeRequest = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 500 })) });

const checkMint = TypeCompiler.Compile(MintTokenRequest);
const checkRevoke = TypeCompiler.Compile(RevokeRequest);

// Token ids are names: printable, no spaces, bounded (ours are UUIDs; other issuers' vary).
const JTI_PATTERN = /^[\x21-\x7e]{1,128}$/;

export function registerTokenRoutes(app: FastifyInstance, deps: AdminRouteDeps, admin: TokenAdmin, ttl: TokenTtl = DEFAULT_TTL): void {
  const onlyAdmin = { onRequest: requireRole(deps.tokens, 'admin') };

  app.post('/v1/tokens', onlyAdmin, async (request, reply) => {
    const body = validated(checkMint, request.body ?? {});
    if (body.node_type !== undefined && body.role !== 'node') {
      throw new MusterError('invalid_message', 'node_type: only applies to role node', { field: 'node_type' });
    }
    if (body.ttl_seconds !== undefined && body.ttl_seconds > ttl.maxSeconds) {
      throw new MusterError('invalid_message', `ttl_seconds: at most ${ttl.maxSeconds} here (tokenMaxTtlSeconds)`, { field: 'ttl_seconds' });
    }
    const minted = await admin.mint({
      role: body.role,
      ttlSeconds: body.ttl_seconds ?? ttl.defaultSeconds,
      ...(body.sub === undefined ? {} : { sub: body.sub }),
      ...(body.node_type === undefined ? {} : { nodeType: body.node_type }),
    });
    deps.logger.info({ jti: minted.jti, role: body.role, sub: body.sub }, 'token minted over the admin API');
    deps.audit?.record({ event: 'token_minted', address: request.ip, jti: minted.jti, correlation_id: request.id, reason: `role ${body.role}` });
    return reply.code(201).send(minted);
  });

  app.get('/v1/tokens', onlyAdmin, async () => admin.list());

  app.post<{ Params: { jti: string } }>('/v1/tokens/:jti/revoke', onlyAdmin, async (request) => {
    const { jti } = request.params;
    if (!JTI_PATTERN.test(jti)) throw new MusterError('invalid_message', 'jti: not a token id', { field: 'jti' });
    const body = validated(checkRevoke, request.body ?? {});
    const revocation = await admin.revoke(jti, body.reason ?? 'revoked over the admin API');
    deps.audit?.record({ event: 'token_revoked', address: request.ip, jti, correlation_id: request.id, reason: revocation.reason });
    return { jti: revocation.jti, reason: revocation.reason, revoked_at: revocation.revoked_at };
  });
}

/** `body` when it fits the schema; otherwise `invalid_message` (400) naming the first bad field. */
function validated<T extends TSchema>(check: TypeCheck<T>, body: unknown): Static<T> {
  if (check.Check(body)) return body;
  const first = check.Errors(body).First();
  const field = first === undefined || first.path === '' ? 'body' : first.path.slice(1).replaceAll('/', '.');
  throw new MusterError('invalid_message', `${field}: ${first?.message ?? 'invalid'}`, { field });
}
