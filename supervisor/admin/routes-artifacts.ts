// Artifact routes of the admin HTTP API (PROTOCOL.md sections 7 and 8): `GET /v1/jobs/{id}/artifacts`
// lists a job's completed artifacts, every attempt; `GET /v1/jobs/{id}/artifacts/{name}` serves
// one's bytes (the last completed attempt's by that name, or `?attempt=N`'s), streamed from the
// store, with a single `Range` (RFC 9110: `bytes=a-b`, `a-`, `-n`) answered 206, or 416 when it
// lies past the end. A name may hold `/` (`dist/app.tar.gz`): it is the rest of the path.
import type { FastifyInstance } from 'fastify';
import type { ArtifactRecord, ArtifactStore, ByteRange } from '../artifacts/artifact-store.js';
import { requireRole } from './api-auth.js';
import { HttpError, notFound } from './api-errors.js';
import type { AdminRouteDeps } from './route-deps.js';

/** One entry of `GET /v1/jobs/{id}/artifacts`. */
export interface ArtifactAnswer {
  artifact_id: string;
  attempt: number;
  name: string;
  size: number;
  sha256: string;
}

interface ArtifactRequest {
  Params: { id: string; '*': string };
  Querystring: { attempt?: string };
}

export function registerArtifactRoutes(app: FastifyInstance, deps: AdminRouteDeps, store: ArtifactStore): void {
  const viewer = { onRequest: requireRole(deps.tokens, 'viewer') };

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/artifacts', viewer, async (request) => {
    const jobId = request.params.id;
    if ((await deps.api.getJob(jobId)) === undefined) throw notFound(`no job ${jobId}`);
    return (await store.list(jobId)).map(toAnswer);
  });

  app.get<ArtifactRequest>('/v1/jobs/:id/artifacts/*', viewer, async (request, reply) => {
    const jobId = request.params.id;
    const name = request.params['*'];
    const attempt = parseAttempt(request.query.attempt);
    if ((await deps.api.getJob(jobId)) === undefined) throw notFound(`no job ${jobId}`);
    const found = await store.read(jobId, name, attempt === undefined ? {} : { attempt });
    if (found === undefined) throw notFound(`job ${jobId} has no artifact ${JSON.stringify(name)}${attempt === undefined ? '' : ` in attempt ${attempt}`}`);
    const { record } = found;
    const header = request.headers.range;
    const range = header === undefined ? undefined : parseRange(header, record.size);
    void reply
      .header('accept-ranges', 'bytes')
      .header('etag', `"${record.sha256}"`)
      .header('content-type', record.content_type ?? 'application/octet-stream')
      .header('content-disposition', `attachment; filename="${downloadName(record.name)}"`);
    if (range === 'unsatisfiable') {
      found.body.destroy();
      void reply.header('content-range', `bytes */${record.size}`);
      throw new HttpError(416, 'invalid_request', `range ${header} lies outside the artifact's ${record.size} bytes`);
    }
    if (range === undefined) return reply.header('content-length', record.size).send(found.body);
    // The whole-file stream is not needed: the store opens the range alone.
    found.body.destroy();
    const part = await store.read(jobId, name, { attempt: record.attempt, range });
    if (part === undefined) throw notFound(`job ${jobId} has no artifact ${JSON.stringify(name)}`);
    return reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end - 1}/${record.size}`)
      .header('content-length', range.end - range.start)
      .send(part.body);
  });
}

function toAnswer(record: ArtifactRecord): ArtifactAnswer {
  return { artifact_id: record.artifact_id, attempt: record.attempt, name: record.name, size: record.size, sha256: record.sha256 };
}

function parseAttempt(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9][0-9]{0,15}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new HttpError(400, 'invalid_request', 'attempt: must be a whole number from 1', 'attempt');
  }
  return Number(text);
}

/**
 * A `Range` header of one byte range within `size` bytes; undefined when the header is not one
 * this serves (another unit, several ranges, not well formed): the whole artifact is sent, as
 * RFC 9110 allows. `unsatisfiable` when it starts past the end.
 */
export function parseRange(header: string, size: number): ByteRange | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (match === null) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  if (first === '') {
    // The last N bytes.
    const n = Number(last);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(first);
  const end = last === '' ? size : Math.min(size, Number(last) + 1);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** The file name a browser saves it as: the name's last part, in characters a header can quote. */
function downloadName(name: string): string {
  const base = name.split('/').at(-1) ?? name;
  return base.replace(/[^\w.+-]/g, '_') || 'artifact';
}
