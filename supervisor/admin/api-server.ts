// The admin HTTP API (PROTOCOL.md section 7) on fastify: one server, bearer-token roles,
// `{error: {code, message}}` on every failure. Routes live in routes-*.ts; this file
// wires them, the error handling and the lifecycle.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import type { Server } from 'node:http';
import Fastify, { type FastifyHttpOptions, type FastifyInstance } from 'fastify';
import type { Logger } from '../../observability/logger.js';
import { activeTracing } from '../../observability/tracing.js';
import { DEFAULTS } from '../config.js';
import { registerAdminAccess, type AdminAccess } from './api-access.js';
import { clientErrorAnswer, HttpError, notFound, rawAnswer, sendBare, toHttpError } from './api-errors.js';
import { registerFleetRoutes, registerProbeRoutes } from './routes-fleet.js';
import { registerJobRoutes } from './routes-jobs.js';
import { registerArtifactRoutes } from './routes-artifacts.js';
import type { ArtifactStore } from '../artifacts/artifact-store.js';
import { registerLogRoutes } from './routes-logs.js';
import { registerTokenRoutes, type TokenTtl } from './routes-tokens.js';
import { registerEventRoutes } from './routes-events.js';
import { registerUiRoutes } from './routes-ui.js';
import type { FleetEvents, FleetEventsOptions } from './fleet-events.js';
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
  /** How long a client may take to send its headers, and its whole request; default config.ts's. */
  timeouts?: AdminApiTimeouts;
  /** The largest request body (413 over it); default config.ts's `apiBodyLimitBytes`. */
  bodyLimitBytes?: number;
  /** Lifetimes of tokens minted over `/v1/tokens`; default config.ts's. */
  tokenTtl?: TokenTtl;
  /** Settings of the live feed `GET /v1/events` (fleet-events.ts); default its own. */
  fleetEvents?: Partial<FleetEventsOptions>;
  /** Where the jobs' artifacts are (`/v1/jobs/{id}/artifacts`); without it those routes do not exist. */
  artifacts?: ArtifactStore;
}

export interface AdminApiTimeouts {
  headersMs: number;
  requestMs: number;
}

const DEFAULT_TIMEOUTS: AdminApiTimeouts = { headersMs: DEFAULTS.apiHeadersTimeoutMs, requestMs: DEFAULTS.apiRequestTimeoutMs };
/** A job id is a UUID; nothing in a path parameter needs more (fastify's default is 100; an artifact's name is a wildcard, not bound by it). */
const MAX_PARAM_CHARS = 128;

export interface AdminApi {
  /** `http://host:port` actually bound. */
  readonly url: string;
  /** The live feed of `GET /v1/events`; undefined when the plane offers none. */
  readonly events?: FleetEvents;
  /** Ends log follows, stops accepting requests and waits for those in flight. */
  close(): Promise<void>;
}

export async function startAdminApi(options: AdminApiOptions): Promise<AdminApi> {
  const logger = options.logger.child({ component: 'admin-api' });
  const closing = new AbortController();
  // Fastify's own request logging is off: requests are logged at debug below, errors once.
  // Request ids are the audit log's correlation ids: unique, not a per-process counter.
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimitBytes ?? DEFAULTS.apiBodyLimitBytes,
    genReqId: () => randomUUID(),
    ...guarded(options.timeouts ?? DEFAULT_TIMEOUTS),
  });
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
    // A passing failure (503 with Retry-After) is a warning: a NATS outage must not flood the error log.
    if (answer.retryAfterSeconds !== undefined) logger.warn({ err, method: request.method, path: pathOf(request.url) }, 'admin API request failed for now');
    else if (answer.status >= 500) logger.error({ err, method: request.method, path: pathOf(request.url) }, 'admin API error');
    if (answer.status === 401) void reply.header('www-authenticate', 'Bearer');
    if (answer.retryAfterSeconds !== undefined) void reply.header('retry-after', String(answer.retryAfterSeconds));
    return reply.code(answer.status).send(answer.toBody());
  });
  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send(notFound(`no route ${request.method} ${pathOf(request.url)}`).toBody()),
  );

  // Before the routes: its role check watches every route registration.
  registerAdminAccess(app, options.access ?? {});
  // Before the routes, so that it sees them all: a span per request (`POST /v1/jobs`). After the
  // role check's watch, which must see each route's own hooks, not @fastify/otel's wrappers of them.
  const tracing = activeTracing();
  if (tracing !== undefined) await app.register(tracing.fastifyPlugin());
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
  if (options.artifacts !== undefined) registerArtifactRoutes(app, deps, options.artifacts);
  registerFleetRoutes(app, deps);
  registerProbeRoutes(app, deps);
  if (options.tokenAdmin !== undefined) registerTokenRoutes(app, deps, options.tokenAdmin, options.tokenTtl);
  const events = registerEventRoutes(app, deps, options.fleetEvents);
  registerUiRoutes(app);

  await app.listen({ host: options.host, port: options.port });
  const { port } = app.server.address() as AddressInfo;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`;
  logger.info({ url }, 'admin API listening');
  const close = (): Promise<void> => app.close();
  return events === undefined ? { url, close } : { url, events, close };
}

/**
 * A client that trickles its headers, or its body, is answered 408 and closed once its time is
 * up (Node checks every connection at `connectionsCheckingInterval`, set so that the check comes
 * soon after the limit); what Node's parser and fastify's router refuse before any route is
 * answered in the one `{error: {code, message}}` shape, like every other error.
 */
function guarded(timeouts: AdminApiTimeouts): FastifyHttpOptions<Server> {
  const { headersMs, requestMs } = timeouts;
  const checkEveryMs = Math.max(10, Math.min(1_000, Math.floor(headersMs / 4)));
  return {
    requestTimeout: requestMs,
    http: { headersTimeout: headersMs, requestTimeout: requestMs, connectionsCheckingInterval: checkEveryMs },
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      socket.end(rawAnswer(clientErrorAnswer(err.code)));
    },
    routerOptions: {
      maxParamLength: MAX_PARAM_CHARS,
      onBadUrl: (path, _req, res) => sendBare(res, new HttpError(400, 'invalid_request', `not a valid URL: ${cut(path)}`)),
      onMaxParamLength: (path, _req, res) =>
        sendBare(res, new HttpError(414, 'invalid_request', `a path parameter is over ${MAX_PARAM_CHARS} characters: ${cut(path)}`)),
    },
  };
}

function cut(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
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
