// The admin HTTP API's error answers: `{error: {code, message, field?}}` (PROTOCOL.md section 7).
// Everything a handler throws is turned into one of these; a foreign error becomes `internal`
// with a fixed message, so no stack trace or library text reaches the client. What Node's HTTP
// parser or fastify's router refuse before any handler (431, 408, 414, a bad URL) gets the same shape.
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { MusterError } from '../../protocol/errors.js';

export type ApiErrorCode = 'unauthorized' | 'forbidden' | 'not_found' | 'conflict' | 'invalid_request' | 'rate_limited' | 'internal';

/** The JSON body of every error answer. */
export interface ApiErrorBody {
  error: {
    code: ApiErrorCode;
    message: string;
    /** Dotted path of the offending field, for `invalid_request`. */
    field?: string;
  };
}

export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly field: string | undefined;
  /** Seconds for `Retry-After` (a passing failure); undefined: no such header. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, code: ApiErrorCode, message: string, field?: string, retryAfterSeconds?: number) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  toBody(): ApiErrorBody {
    const error: ApiErrorBody['error'] = { code: this.code, message: this.message };
    if (this.field !== undefined) error.field = this.field;
    return { error };
  }
}

export function notFound(message: string): HttpError {
  return new HttpError(404, 'not_found', message);
}

/** Fastify's own failures carry a 4xx `statusCode` (bad JSON, body too large, wrong content type). */
interface StatusCarrier {
  statusCode?: unknown;
  message?: unknown;
}

/** Maps anything thrown by a route or by fastify itself to the answer the client gets. */
export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof MusterError) return fromMusterError(err);
  const status = (err as StatusCarrier | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const message = (err as StatusCarrier).message;
    return new HttpError(status, 'invalid_request', typeof message === 'string' ? message : 'invalid request');
  }
  return new HttpError(500, 'internal', 'internal error');
}

function fromMusterError(err: MusterError): HttpError {
  // A passing failure of what the plane stands on (a NATS timeout, NATS away, no responders):
  // the request may succeed shortly, here or on another replica. The message is the plane's own.
  if (err.retryAfterMs !== undefined) {
    return new HttpError(503, 'internal', err.message, undefined, Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
  }
  switch (err.code) {
    case 'auth_failed':
    case 'token_expired':
    case 'token_revoked':
      return new HttpError(401, 'unauthorized', err.message);
    case 'forbidden':
      return new HttpError(403, 'forbidden', err.message);
    case 'invalid_message':
      return new HttpError(400, 'invalid_request', err.message, err.field);
    case 'rate_limited':
      return new HttpError(429, 'rate_limited', err.message);
    case 'shutting_down':
      return new HttpError(503, 'internal', 'the control plane is shutting down');
    default:
      // MusterError messages are written for peers, but `internal` ones may wrap anything.
      return new HttpError(500, 'internal', err.code === 'internal' ? 'internal error' : err.message);
  }
}

/**
 * A request that Node's HTTP parser refused before fastify saw it (`clientError`): headers over
 * the limit (431), not all received in time (408), or not HTTP at all (400).
 */
export function clientErrorAnswer(code: string | undefined): HttpError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new HttpError(431, 'invalid_request', 'request headers too large');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpError(408, 'invalid_request', 'request not received in time');
    default:
      return new HttpError(400, 'invalid_request', 'malformed HTTP request');
  }
}

/** The whole HTTP/1.1 answer as text, for a socket that has no reply object yet; it closes the connection. */
export function rawAnswer(err: HttpError): string {
  const body = JSON.stringify(err.toBody());
  return (
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n` +
    `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** Writes `err` on a bare response (fastify's router refusing a URL before any route runs). */
export function sendBare(res: ServerResponse, err: HttpError): void {
  const body = JSON.stringify(err.toBody());
  res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}
