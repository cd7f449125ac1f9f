// The listening side of the WebSocket transport: an HTTP (ws://) or HTTPS (wss://) server that
// upgrades requests for one path offering the `muster.v1` subprotocol, and refuses the rest
// with a plain HTTP answer before any WebSocket exists.
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { dropOnHandshakeFailure, serverTlsOptions } from './tls-options.js';
import { WebSocketServer } from 'ws';
import { peerNamesOf } from './peer-names.js';
import { boundUrl, tcpPeerAddress } from './tcp.js';
import type { ListenOptions, ServerTlsOptions, TransportServer } from './transport.js';
import { WS_SUBPROTOCOL, WebSocketConnection } from './websocket-connection.js';

/** PROTOCOL.md: WebSocket and gRPC limits are at least 4 × max_frame_bytes, so that an oversize frame reaches us. */
export const PAYLOAD_LIMIT_FACTOR = 4;

/** Messages smaller than this go out uncompressed (the plane's `compress_min_bytes`). */
export const COMPRESS_FROM_BYTES = 1024;

export interface WebSocketEndpoint {
  scheme: 'ws' | 'wss';
  host: string;
  port: number;
  /** The one path upgraded; any other gets 404. */
  path: string;
  /** Required for `wss`. */
  tls?: ServerTlsOptions;
  /** Keepalive ping interval for accepted connections; 0 turns it off. */
  pingIntervalMs: number;
  tlsHandshakeTimeoutMs?: number;
  closeTimeoutMs?: number;
}

export function listenWebSocket(endpoint: WebSocketEndpoint, options: ListenOptions): Promise<TransportServer> {
  const server = createHttpOrHttps(endpoint);
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false, // each connection's owner closes it
    // RFC 7692 with a client that offers it (PROTOCOL.md 8: WebSocket's own compression). `ws`
    // holds an inflating message to `maxPayload` as it inflates (close 1009 past it), so a bomb
    // costs at most that; the connection then refuses a frame over `maxFrameBytes`.
    perMessageDeflate: options.compression === true ? { threshold: COMPRESS_FROM_BYTES } : false,
    maxPayload: PAYLOAD_LIMIT_FACTOR * options.maxFrameBytes,
    // Selection only: `ws` calls this only when some subprotocol is offered, so the
    // refusal of a handshake without `muster.v1` happens in `onUpgrade` below.
    handleProtocols: (protocols) => (protocols.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  const state = { closed: false };

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refusal = refusalOf(req, endpoint.path, state.closed);
    if (refusal !== undefined) {
      refuse(socket, refusal.status, refusal.message);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const peer = req.socket;
      const conn = new WebSocketConnection(ws, {
        maxFrameBytes: options.maxFrameBytes,
        maxSendBufferBytes: options.maxSendBufferBytes,
        remoteAddress: tcpPeerAddress(peer),
        peerNames: endpoint.scheme === 'wss' ? peerNamesOf(peer as TLSSocket) : [],
        pingIntervalMs: endpoint.pingIntervalMs,
        closeTimeoutMs: endpoint.closeTimeoutMs,
      });
      options.onConnection(conn);
    });
  });
  // A plain HTTP request: nothing is served here but the upgrade.
  server.on('request', (req: IncomingMessage, res) => {
    const onPath = pathOf(req) === endpoint.path;
    res.writeHead(onPath ? 426 : 404, {
      'Content-Type': 'text/plain',
      Connection: 'close',
      ...(onPath ? { Upgrade: 'websocket' } : {}),
    });
    res.end(onPath ? `WebSocket only, subprotocol ${WS_SUBPROTOCOL}\n` : 'not found\n');
  });

  return new Promise((resolve, reject) => {
    const where = `${endpoint.scheme}://${endpoint.host}:${endpoint.port}${endpoint.path}`;
    const onListenError = (err: Error): void =>
      reject(new Error(`cannot listen on ${where}: ${err.message}`, { cause: err }));
    server.once('error', onListenError);
    server.listen({ host: endpoint.host, port: endpoint.port, backlog: options.backlog }, () => {
      server.off('error', onListenError);
      // An accept failure (e.g. EMFILE) must not bring the process down; the listener stays up.
      server.on('error', (err) => process.emitWarning(err));
      const url = `${boundUrl(endpoint.scheme, server.address())}${endpoint.path}`;
      resolve({
        url,
        close: () => {
          if (!state.closed) {
            state.closed = true;
            // Stops accepting at once; upgraded connections are their owners' to close.
            server.close();
            server.closeIdleConnections();
          }
          return Promise.resolve();
        },
      });
    });
  });
}

function createHttpOrHttps(endpoint: WebSocketEndpoint): Server {
  if (endpoint.scheme === 'ws') return createHttpServer();
  const url = new URL(`wss://${endpoint.host}:${endpoint.port}${endpoint.path}`);
  const server = createHttpsServer(serverTlsOptions(url, endpoint.tls, endpoint.tlsHandshakeTimeoutMs));
  dropOnHandshakeFailure(server);
  return server;
}

interface Refusal {
  status: number;
  message: string;
}

function refusalOf(req: IncomingMessage, path: string, closed: boolean): Refusal | undefined {
  if (closed) return { status: 503, message: 'the listener is closing' };
  if (pathOf(req) !== path) return { status: 404, message: `not found; WebSocket path is ${path}` };
  if (!offeredProtocols(req).includes(WS_SUBPROTOCOL)) {
    return { status: 400, message: `subprotocol ${WS_SUBPROTOCOL} required` };
  }
  return undefined;
}

function pathOf(req: IncomingMessage): string {
  return (req.url ?? '').split('?', 1)[0]!;
}

function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  if (header === undefined) return [];
  return header.split(',').map((p) => p.trim());
}

/** Answers an upgrade request with a plain HTTP error and closes the socket, as `ws` does for bad handshakes. */
function refuse(socket: Duplex, status: number, message: string): void {
  socket.on('error', () => {}); // the client may already be gone
  socket.once('finish', () => socket.destroy());
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Connection: close\r\n' +
      'Content-Type: text/plain\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
