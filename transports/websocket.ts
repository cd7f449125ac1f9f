// The `ws` and `wss` transports: one frame body per WebSocket message (PROTOCOL.md section 1),
// at `ws://host:port/v1/connect`, subprotocol `muster.v1`; `wss` serves over HTTPS with the
// listener's certificate and, with `requireClientCert`, mutual TLS. Registers both schemes on
// import, with the default keepalive; `createWebSocketTransport` makes one with another.
import { tcpAddress } from './tcp.js';
import {
  registerTransport,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type Transport,
  type TransportServer,
} from './transport.js';
import { dialWebSocket } from './websocket-dial.js';
import { WS_PATH } from './websocket-connection.js';
import { listenWebSocket } from './websocket-server.js';

export { WS_PATH, WS_SUBPROTOCOL, WebSocketConnection } from './websocket-connection.js';
export { PAYLOAD_LIMIT_FACTOR } from './websocket-server.js';

/** How often a listener pings each connection unless told otherwise. */
export const DEFAULT_PING_INTERVAL_MS = 15_000;

export interface WebSocketTransportOptions {
  /**
   * Keepalive of the listening side: every accepted connection is pinged this often, and
   * terminated (reported as `closed(err)`) when it did not answer the previous ping, so a
   * half-open connection (the node's host vanished without a FIN) is noticed within two
   * intervals rather than after TCP's retransmission timeout. `ws` clients answer pings on
   * their own. Default 15 s; 0 turns pinging off. The dialing side never pings.
   */
  pingIntervalMs?: number;
}

/**
 * A WebSocket transport serving `ws` and `wss`. The registered default uses
 * `DEFAULT_PING_INTERVAL_MS`, unless a listener's `keepaliveIntervalMs` says otherwise
 * (the control plane passes its `wsPingIntervalMs` setting).
 */
export function createWebSocketTransport(options: WebSocketTransportOptions = {}): Transport {
  const pingIntervalMs = options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
  if (!Number.isFinite(pingIntervalMs) || pingIntervalMs < 0) {
    throw new Error(`pingIntervalMs must be a non-negative number of milliseconds, got ${pingIntervalMs}`);
  }
  return {
    schemes: ['ws', 'wss'],

    async listen(url: URL, listenOptions: ListenOptions): Promise<TransportServer> {
      const scheme = schemeOf(url);
      const { host, port } = tcpAddress(url);
      const path = pathOf(url);
      const interval = listenOptions.keepaliveIntervalMs ?? pingIntervalMs;
      const { tlsHandshakeMs: tlsHandshakeTimeoutMs, closeMs: closeTimeoutMs } = listenOptions.timeouts ?? {};
      const endpoint = { scheme, host, port, path, tls: listenOptions.tls, pingIntervalMs: interval, tlsHandshakeTimeoutMs, closeTimeoutMs };
      return listenWebSocket(endpoint, listenOptions);
    },

    async dial(url: URL, dialOptions: DialOptions): Promise<Connection> {
      schemeOf(url);
      const target = new URL(url.href);
      target.pathname = pathOf(url);
      return dialWebSocket(target, dialOptions);
    },
  };
}

function schemeOf(url: URL): 'ws' | 'wss' {
  if (url.protocol === 'ws:') return 'ws';
  if (url.protocol === 'wss:') return 'wss';
  throw new Error(`${url.href}: expected ws:// or wss://`);
}

/** The URL's path, or the protocol's `/v1/connect` when it names none. */
function pathOf(url: URL): string {
  return url.pathname === '' || url.pathname === '/' ? WS_PATH : url.pathname;
}

export const webSocketTransport: Transport = createWebSocketTransport();

registerTransport(webSocketTransport);
