// Fleet and health routes of the admin HTTP API: nodes, drain, undrain, unbench, stats (token needed), and the
// probes and Prometheus metrics (no token: scrapers and orchestrators carry none).
import type { FastifyInstance } from 'fastify';
import type { AdminRouteDeps } from './route-deps.js';
import { requireRole } from './api-auth.js';
import { HttpError, notFound } from './api-errors.js';

const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8';

export function registerFleetRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { api, tokens } = deps;

  // Dead nodes are listed too (`state: dead`) until `deadNodeRetentionMs` has passed: clients filter.
  app.get('/v1/nodes', { onRequest: requireRole(tokens, 'viewer') }, async () => (api.clusterNodes === undefined ? api.listNodes() : api.clusterNodes()));

  app.get<{ Params: { id: string } }>('/v1/nodes/:id', { onRequest: requireRole(tokens, 'viewer') }, async (request) => {
    const node = api.findNode === undefined ? api.getNode(request.params.id) : await api.findNode(request.params.id);
    if (node === undefined) throw notFound(`no node ${request.params.id}`);
    return node;
  });

  app.post<{ Params: { id: string } }>(
    '/v1/nodes/:id/drain',
    { onRequest: requireRole(tokens, 'operator') },
    async (request, reply) => {
      if (!(await api.drainNode(request.params.id))) throw notFound(`no connected node ${request.params.id}`);
      deps.logger.info({ node_id: request.params.id }, 'node drain requested over the admin API');
      return reply.code(202).send({ node_id: request.params.id });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/nodes/:id/undrain',
    { onRequest: requireRole(tokens, 'operator') },
    async (request, reply) => {
      const nodeId = request.params.id;
      const outcome = await api.undrainNode(nodeId);
      if (outcome === 'not_connected') throw notFound(`no connected node ${nodeId}`);
      if (outcome === 'not_draining') throw new HttpError(409, 'conflict', `node ${nodeId} is not draining`);
      if (outcome === 'not_supported') {
        throw new HttpError(409, 'conflict', `node ${nodeId} does not offer the undrain feature: restart its agent to return it to service`);
      }
      deps.logger.info({ node_id: nodeId }, 'node undrain requested over the admin API');
      return reply.code(202).send({ node_id: nodeId });
    },
  );

  app.post<{ Params: { id: string } }>(
    '/v1/nodes/:id/unbench',
    { onRequest: requireRole(tokens, 'operator') },
    async (request, reply) => {
      const nodeId = request.params.id;
      if (api.unbenchNode?.(nodeId) !== true) throw new HttpError(409, 'conflict', `node ${nodeId} is not benched`);
      deps.logger.info({ node_id: nodeId }, 'node bench lifted over the admin API');
      return reply.code(200).send({ node_id: nodeId });
    },
  );

  app.get('/v1/stats', { onRequest: requireRole(tokens, 'viewer') }, async () => api.stats());

  app.get('/v1/cluster', { onRequest: requireRole(tokens, 'viewer') }, async () => {
    if (api.cluster === undefined) throw notFound('this plane does not report its replicas');
    return api.cluster();
  });
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
