// Fleet and health routes of the admin HTTP API: nodes, drain, stats (token needed), and the
// probes and Prometheus metrics (no token: scrapers and orchestrators carry none).
import type { FastifyInstance } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { notFound } from './api-errors.js';

const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

export function registerFleetRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { api, tokens } = deps;

  app.get('/v1/nodes', { onRequest: requireRole(tokens, 'viewer') }, async () => api.listNodes());

  app.post<{ Params: { id: string } }>(
    '/v1/nodes/:id/drain',
    { onRequest: requireRole(tokens, 'operator') },
    async (request, reply) => {
      if (!api.drainNode(request.params.id)) throw notFound(`no connected node ${request.params.id}`);
      deps.logger.info({ node_id: request.params.id }, 'node drain requested over the admin API');
      return reply.code(202).send({ node_id: request.params.id });
    },
  );

  app.get('/v1/stats', { onRequest: requireRole(tokens, 'viewer') }, async () => api.stats());
}

export function registerProbeRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { api } = deps;

  app.get('/healthz', async () => ({ status: 'ok' }));

  // A store whose writes fail (disk full, I/O error) makes the plane unready, and says why.
  app.get('/readyz', async (_request, reply) => {
    if (api.isReady()) return reply.send({ status: 'ready' });
    const failure = api.storeFailure();
    return reply.code(503).send(failure === undefined ? { status: 'not_ready' } : { status: 'not_ready', reason: `store: ${failure}` });
  });

  app.get('/metrics', async (_request, reply) => reply.type(PROMETHEUS_TEXT).send(await api.metrics()));
}
