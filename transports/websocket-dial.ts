// The dialing side of the WebSocket transport: opens `ws://` or `wss://`, offers `muster.v1`
// (and `ws` refuses a server that does not pick it), and wraps the open socket.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { tcpPeerAddress } from './tcp.js';
import { clientTlsOptions } from './tls-options.js';
import type { DialOptions } from './transport.js';
import { WS_SUBPROTOCOL, WebSocketConnection } from './websocket-connection.js';
import { COMPRESS_FROM_BYTES, PAYLOAD_LIMIT_FACTOR } from './websocket-server.js';

/** Opens a WebSocket to `url` (its path already set); rejects with an Error on failure or timeout. */
export function dialWebSocket(url: URL, options: DialOptions): Promise<WebSocketConnection> {
  const target = url.href;
  const ws = new WebSocket(url, WS_SUBPROTOCOL, {
    maxPayload: PAYLOAD_LIMIT_FACTOR * options.maxFrameBytes,
    // Offered always: a plane behind payload encryption declines it (PROTOCOL.md 8), and the
    // inflated size is held to `maxPayload` here as on the plane.
    perMessageDeflate: { threshold: COMPRESS_FROM_BYTES },
    ...(url.protocol === 'wss:' ? clientTlsOptions(options.tls) : {}),
  });
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    const settle = (): void => {
      clearTimeout(timer);
      ws.off('upgrade', onUpgrade);
      ws.off('open', onOpen);
      ws.off('error', onError);
    };
    const fail = (err: Error): void => {
      settle();
      ws.on('error', () => {}); // a late error of a socket we gave up on must not crash the process
      ws.terminate();
      reject(err);
    };
    const onUpgrade = (res: IncomingMessage): void => {
      socket = res.socket;
    };
    const onError = (err: Error): void => fail(new Error(`connect to ${target} failed: ${err.message}`, { cause: err }));
    const onOpen = (): void => {
      const conn = new WebSocketConnection(ws, {
        maxFrameBytes: options.maxFrameBytes,
        maxSendBufferBytes: options.maxSendBufferBytes,
        remoteAddress: socket === undefined ? 'unknown:0' : tcpPeerAddress(socket),
      });
      settle(); // after the connection took its own listeners, so no error goes unheard
      resolve(conn);
    };
    const ms = options.connectTimeoutMs;
    const timer =
      ms > 0 && Number.isFinite(ms)
        ? setTimeout(() => fail(new Error(`connect to ${target} timed out after ${ms} ms`)), ms)
        : undefined;
    ws.once('upgrade', onUpgrade);
    ws.once('open', onOpen);
    ws.once('error', onError);
  });
}

/** Only the settings given: an absent `ca` means the system's CAs, an absent `servername` the URL's host. */
