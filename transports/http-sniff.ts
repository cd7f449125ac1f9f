// HTTP where the node protocol was expected, on a stream transport: the first bytes of a
// connection tell. An agent pointed at the admin API reads `HTTP/1.1 ...`, which the frame
// decoder would take for a 1.2 GB length; an HTTP client (curl, a browser, a health check)
// pointed at a node port sends `GET / HTTP/1.1`. Both get one clear line instead.
import { MusterError } from '../protocol/errors.js';

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];

/** What a dialled stream reports when the peer answered like an HTTP server: never a node listener. */
export class HttpPeerError extends MusterError {
  constructor() {
    super('malformed_frame', 'this looks like an HTTP server: the node listener is on 7420 by default (tcp://HOST:7420), the admin API on 7480');
  }
}

/** True when `bytes` start like an HTTP response. */
export function looksLikeHttpResponse(bytes: Uint8Array): boolean {
  return startsWith(bytes, 'HTTP/');
}

/** True when `bytes` start like an HTTP request line (`GET /`, `POST /v1/jobs`, ...). */
export function looksLikeHttpRequest(bytes: Uint8Array): boolean {
  return HTTP_METHODS.some((method) => startsWith(bytes, `${method} `));
}

/** An HTTP/1.1 400 answer whose text body is `notice`, closing the connection. */
export function httpRefusal(notice: string): string {
  const body = `${notice}\n`;
  return [
    'HTTP/1.1 400 Bad Request',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}

function startsWith(bytes: Uint8Array, text: string): boolean {
  if (bytes.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}
