// The admin HTTP API (PROTOCOL.md section 7) on fastify: one server, bearer-token roles,
// `{error: {code, message}}` on every failure. Routes live in routes-*.ts; this file
// wires them, the error handling and the lifecycle.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from '../../observability/logger.js';
import { DEFAULTS } from '../config.js';
import { registerAdminAccess, type AdminAccess } from './api-access.js';
import { notFound, toHttpError } from './api-errors.js';
import { registerFleetRoutes, registerProbeRoutes } from './routes-fleet.js';
import { registerJobRoutes } from './routes-jobs.js';
import { registerLogRoutes } from './routes-logs.js';
import { registerTokenRoutes } from './routes-tokens.js';
import type { PlaneApi } from './plane-api.js';
import type { AdminRouteDeps } from './route-deps.js';
import type { TokenAdmin } from '../tokens/token-registry.js';
import type { TokenAuthority } from '../tokens/tokens.js';

export interface AdminApiOptions {
  /** Interface to bind, e.g. `127.0.0.1`. */
  host: string;
  /** TCP port; 0 picks a free one (see `url`). */
  port: number;
  api: PlaneApi;
  tokens: TokenAuthority;
  /** Minting, listing and revoking tokens (`/v1/tokens`); without it those routes do not exist. */
  tokenAdmin?: TokenAdmin;
  logger: Logger;
  /** Allow-list, bans, per-token rate limit and audit (api-access.ts); default: none of them. */
  access?: AdminAccess;
  /** Quiet time after which a log follow sends a keepalive comment; default `DEFAULTS.logKeepaliveMs`. */
  logKeepaliveMs?: number;
}

export interface AdminApi {
  /** `http://host:port` actually bound. */
  readonly url: string;
  /** Ends log follows, stops accepting requests and waits for those in flight. */
  close(): Promise<void>;
}

export async function startAdminApi(options: AdminApiOptions): Promise<AdminApi> {
  const logger = options.logger.child({ component: 'admin-api' });
  const closing = new AbortController();
  // Fastify's own request logging is off: requests are logged at debug below, errors once.
  // Request ids are the audit log's correlation ids: unique, not a per-process counter.
  const app = Fastify({ logger: false, bodyLimit: 1_048_576, genReqId: () => randomUUID() });
  acceptEmptyJsonBody(app);
  app.addHook('preClose', async () => closing.abort());
  app.addHook('onResponse', async (request, reply) => {
    logger.debug(
      { method: request.method, path: pathOf(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'http request',
    );
  });
  app.setErrorHandler(async (err, request, reply) => {
    const answer = toHttpError(err);
    if (answer.status >= 500) logger.error({ err, method: request.method, path: pathOf(request.url) }, 'admin API error');
    if (answer.status === 401) void reply.header('www-authenticate', 'Bearer');
    return reply.code(answer.status).send(answer.toBody());
  });
  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send(notFound(`no route ${request.method} ${pathOf(request.url)}`).toBody()),
  );

  // Before the routes: its role check watches every route registration.
  registerAdminAccess(app, options.access ?? {});
  const deps: AdminRouteDeps = {
    api: options.api,
    tokens: options.tokens,
    logger,
    closing: closing.signal,
    logKeepaliveMs: options.logKeepaliveMs ?? DEFAULTS.logKeepaliveMs,
  };
  if (options.access?.audit !== undefined) deps.audit = options.access.audit;
  registerJobRoutes(app, deps);
  registerLogRoutes(app, deps);
  registerFleetRoutes(app, deps);
  registerProbeRoutes(app, deps);
  if (options.tokenAdmin !== undefined) registerTokenRoutes(app, deps, options.tokenAdmin);

  await app.listen({ host: options.host, port: options.port });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
  logger.info({ url }, 'admin API listening');
  return { url, close: () => app.close() };
}

/**
 * `POST .../cancel` and `.../drain` take no body, but clients often send
 * `content-type: application/json` anyway; fastify's parser would reject the empty body.
 */
function acceptEmptyJsonBody(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    parseJson(request, text, done);
  });
}

/** The path without its query, cut short: it goes into messages and logs. */
function pathOf(url: string): string {
  const path = url.split('?', 1)[0] ?? '';
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}
