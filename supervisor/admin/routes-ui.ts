// `/ui`: the live visualizer, a few static files from `web/` read once at start and served from
// memory (a fixed list: no path from the request ever reaches the file system). The files hold
// no data, so they need no token; the page reads its viewer token from the URL's fragment
// (`/ui/#token=...`, which browsers never send to a server, so it is in no log) and sends it
// with each API request. Everything it shows comes from the token-checked `/v1` routes.
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { notFound } from './api-errors.js';

const WEB_DIR = new URL('../../web/', import.meta.url);

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The page's files: nothing else under web/ is served. */
const FILES = ['index.html', 'app.js', 'fleet-state.js', 'dom.js', 'fleet-view.js', 'node-view.js', 'jobs-view.js', 'graph-layout.js', 'api.js', 'style.css', 'favicon.svg'];

// Only this origin's scripts, styles and connections: data from the network can never run as code.
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

export function registerUiRoutes(app: FastifyInstance): void {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of FILES) {
    files.set(name, { type: TYPES[name.slice(name.lastIndexOf('.'))] ?? 'application/octet-stream', body: readFileSync(new URL(name, WEB_DIR)) });
  }
  const send = (reply: FastifyReply, name: string): FastifyReply => {
    const file = files.get(name);
    if (file === undefined) throw notFound(`no file ${name} in /ui`);
    return reply.headers(SECURITY_HEADERS).type(file.type).send(file.body);
  };
  // Relative URLs in the page resolve under /ui/.
  app.get('/ui', async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui/', async (_request, reply) => send(reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/ui/:file', async (request, reply) => send(reply, request.params.file));
}
