// `GET /v1/events`: the live fleet feed (fleet-events.ts) as server-sent events, and
// `GET /v1/machines/node`: the node machine's graph (machine-graph.ts), both for the visualizer
// (`/ui`) and for scripts. The feed takes the viewer token from the `muster_token` cookie too:
// a browser's EventSource cannot send an Authorization header. A cookie rather than a query
// parameter, because a URL ends up in proxy logs and browser history; the page sets it with
// `Path=/v1/events; SameSite=Strict`, so it goes with this request only and never cross-site.
import type { FastifyInstance } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { FleetEvents, type FleetEventsOptions, type FleetSource } from './fleet-events.js';
import { nodeMachineGraph } from './machine-graph.js';

/** The cookie the visualizer keeps its token in, for `GET /v1/events` only. */
export const EVENTS_TOKEN_COOKIE = 'muster_token';

/** Registers the feed when the plane offers one (`PlaneApi`'s fleet members); returns it, for tests. */
export function registerEventRoutes(
  app: FastifyInstance,
  deps: AdminRouteDeps,
  options: Partial<FleetEventsOptions> = {},
): FleetEvents | undefined {
  app.get('/v1/machines/node', { onRequest: requireRole(deps.tokens, 'viewer') }, async () => nodeMachineGraph());

  const source = fleetSourceOf(deps.api);
  if (source === undefined) return undefined;
  const events = new FleetEvents(source, {
    keepaliveMs: deps.logKeepaliveMs,
    onError: (err) => deps.logger.warn({ err }, 'live feed: reading the queue counts failed'),
    ...options,
  });
  deps.closing.addEventListener('abort', () => events.close(), { once: true });

  app.get('/v1/events', { onRequest: requireRole(deps.tokens, 'viewer', { cookie: EVENTS_TOKEN_COOKIE }) }, async (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    const lastEventId = request.headers['last-event-id'];
    events.open(res, typeof lastEventId === 'string' ? lastEventId : undefined);
    return reply;
  });
  return events;
}

function fleetSourceOf(api: AdminRouteDeps['api']): FleetSource | undefined {
  const { watchFleet, nodeView, queueCounts } = api;
  if (watchFleet === undefined || nodeView === undefined || queueCounts === undefined) return undefined;
  return {
    listNodes: () => (api.fleetNodes === undefined ? api.listNodes() : api.fleetNodes()),
    nodeView: (nodeId) => nodeView.call(api, nodeId),
    queueCounts: () => queueCounts.call(api),
    watchFleet: (handler) => watchFleet.call(api, handler),
  };
}
