// Who may use the admin HTTP API, as fastify hooks: the `apiAllowCidrs` allow-list (403
// `forbidden`, for every path: the probes and /metrics too, since scrapers and orchestrators sit
// on the operators' network), the address bans and failed-authentication budget shared with the
// node listeners (429 `rate_limited`), a request rate per token (429 `rate_limited`), and a role
// check on every `/v1` route (a route registered without one fails at start-up). Authentication
// outcomes and refusals go to the audit log, throttled so that a flood is a few lines.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import type { AddressGuard, GuardContext, Refusal } from '../security/address-guard.js';
import { grantOf, isRoleCheck, presentedToken } from './api-auth.js';
import { HttpError, toHttpError } from './api-errors.js';
import type { AuditSink } from '../security/audit-log.js';
import type { CidrList } from '../security/cidr-list.js';
import type { KeyedRateLimit } from '../security/keyed-rate-limit.js';
import { peerIp } from '../security/peer-address.js';

export interface AdminAccess {
  /** Addresses the API answers; empty list: all. */
  allow?: CidrList;
  /** Per-address bans and failed-authentication budget, shared with the node listeners. */
  guard?: AddressGuard;
  /** Requests per token. */
  perToken?: KeyedRateLimit;
  audit?: AuditSink;
  /** Counts refused authentications and requests over a limit. */
  metrics?: Pick<PlaneMetrics, 'authFailed' | 'rateLimited'>;
}

/** Registers the hooks on `app`; call before any route is registered (the role check watches registrations). */
export function registerAdminAccess(app: FastifyInstance, access: AdminAccess): void {
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/v1/')) return;
    const hooks: unknown[] = Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest];
    if (!hooks.some(isRoleCheck)) throw new Error(`admin API route ${String(route.method)} ${route.url} has no role check (requireRole)`);
  });

  app.addHook('onRequest', async (request, reply) => {
    const ip = addressOf(request);
    if (access.allow !== undefined && !access.allow.allows(ip)) {
      access.audit?.recordThrottled(`access_denied|${ip}`, {
        event: 'access_denied',
        address: ip,
        ...context(request),
        code: 'forbidden',
        reason: 'address not in apiAllowCidrs',
      });
      throw new HttpError(403, 'forbidden', 'this address may not use the admin API');
    }
    const admission = access.guard?.checkRequest(ip, context(request)) ?? 'ok';
    // Refused before the token is read, so even a valid admin token hears why and for how long.
    if (admission !== 'ok') {
      access.metrics?.rateLimited('api_address');
      refuseAddress(reply, access.guard?.refusal(ip));
    }
  });

  // After every onRequest hook, the route's role check included: the token is known, the body not yet read.
  app.addHook('preParsing', async (request, reply, payload) => {
    const grant = grantOf(request);
    if (grant === undefined) return payload;
    const ip = addressOf(request);
    const key = grant.jti ?? `sha256:${createHash('sha256').update(request.headers.authorization ?? '').digest('base64url')}`;
    if (access.perToken !== undefined && !access.perToken.take(key)) {
      access.metrics?.rateLimited('api_token');
      access.audit?.recordThrottled(`rate_limited|${key}`, {
        event: 'rate_limited',
        address: ip,
        jti: grant.jti,
        role: grant.role,
        ...context(request),
        reason: `over ${access.perToken.rate} requests a second for this token`,
      });
      refuseForRate(reply, undefined);
    }
    // Per token and address, once a minute: a polling client is not a line per request.
    access.audit?.recordThrottled(`auth_succeeded|${key}|${ip}`, {
      event: 'auth_succeeded',
      address: ip,
      jti: grant.jti,
      role: grant.role,
      ...context(request),
    });
    return payload;
  });

  app.addHook('onError', async (request, _reply, error) => {
    const answer = toHttpError(error);
    const ip = addressOf(request);
    if (answer.status === 401) {
      access.metrics?.authFailed('api', answer.code);
      const details: GuardContext = { ...context(request), code: answer.code, reason: answer.message };
      // Only a token that failed counts against the address: a request with none (a browser, a
      // scraper at the wrong path) guessed nothing, and must not get the probes refused.
      const guessed = request.headers.authorization !== undefined || presentedToken(request);
      if (guessed && access.guard !== undefined) access.guard.authFailed(ip, details);
      else access.audit?.recordThrottled(`auth_failed|${ip}`, { event: 'auth_failed', address: ip, ...details });
      return;
    }
    const grant = grantOf(request);
    if (answer.status === 403 && grant !== undefined) {
      access.audit?.recordThrottled(`access_denied|${ip}|${grant.jti ?? ''}`, {
        event: 'access_denied',
        address: ip,
        jti: grant.jti,
        role: grant.role,
        ...context(request),
        code: answer.code,
        reason: answer.message,
      });
    }
  });
}

/** 429 `rate_limited` for the address: why (a ban and its cause, or the failed-authentication budget) and for how long. */
function refuseAddress(reply: FastifyReply, refusal: Refusal | undefined): never {
  if (refusal === undefined) refuseForRate(reply, undefined);
  void reply.header('retry-after', String(refusal.seconds));
  throw new HttpError(429, 'rate_limited', `${refusal.reason}; refused for ${refusal.seconds} s more, whatever the token`);
}

/** 429 `rate_limited`, with `Retry-After` (seconds left of a ban, else 1). */
function refuseForRate(reply: FastifyReply, banSecondsLeft: number | undefined): never {
  void reply.header('retry-after', String(banSecondsLeft !== undefined && banSecondsLeft > 0 ? banSecondsLeft : 1));
  throw new HttpError(
    429,
    'rate_limited',
    banSecondsLeft !== undefined ? `this address is banned for ${banSecondsLeft} s` : 'too many requests; retry later',
  );
}

/** The peer's IP; fastify's `request.ip` is the socket's address (no proxy headers are trusted). */
function addressOf(request: FastifyRequest): string {
  return peerIp(request.ip) ?? request.ip;
}

/** The request's audit context: its id, the method, and the route pattern (bounded, unlike the raw URL). */
function context(request: FastifyRequest): GuardContext {
  return { correlation_id: request.id, method: request.method, path: request.routeOptions.url ?? 'unknown route' };
}
