// The listening side shared by every stream transport (TCP, Unix, TLS): binds a net.Server,
// wraps each accepted socket in a StreamConnection, and on close stops accepting and closes
// the connections still open, so that closing a listener is bounded in time.
import type { ListenOptions as NetListenOptions, Server, Socket } from 'node:net';
import { StreamConnection } from './stream-connection.js';
import type { ListenOptions, TransportServer } from './transport.js';

export interface StreamEndpoint {
  /** A server not yet listening: `net.createServer()`, or a TLS server. */
  server: Server;
  /** Where to bind. */
  bind: NetListenOptions;
  /** The event that hands over a ready socket: `connection`, or `secureConnection` for TLS. */
  connectionEvent?: string;
  /** The URL clients dial, once bound (with the real port). */
  url(server: Server): string;
  /** The peer's address for logs and allow-lists. */
  peerAddress(socket: Socket): string;
  /** Runs after the listener has closed, e.g. to remove a socket file. */
  cleanup?(): void;
}

export function listenStream(endpoint: StreamEndpoint, options: ListenOptions): Promise<TransportServer> {
  const { server } = endpoint;
  const live = new Set<StreamConnection>();
  server.on(endpoint.connectionEvent ?? 'connection', (socket: Socket) => {
    const conn = new StreamConnection(socket, {
      maxFrameBytes: options.maxFrameBytes,
      maxSendBufferBytes: options.maxSendBufferBytes,
      remoteAddress: endpoint.peerAddress(socket),
    });
    live.add(conn);
    socket.once('close', () => live.delete(conn));
    options.onConnection(conn);
  });
  return new Promise((resolve, reject) => {
    const onListenError = (err: Error): void => reject(new Error(`cannot listen on ${describe(endpoint.bind)}: ${err.message}`, { cause: err }));
    server.once('error', onListenError);
    server.listen(endpoint.bind, () => {
      server.off('error', onListenError);
      // An accept failure (e.g. EMFILE) must not bring the process down; the listener stays up.
      server.on('error', (err) => process.emitWarning(err));
      resolve(new StreamServer(endpoint, live));
    });
  });
}

class StreamServer implements TransportServer {
  readonly url: string;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly endpoint: StreamEndpoint,
    private readonly live: Set<StreamConnection>,
  ) {
    this.url = endpoint.url(endpoint.server);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.endpoint.server.close(() => resolve()));
    await Promise.all([...this.live].map((conn) => conn.close()));
    await stopped;
    this.endpoint.cleanup?.();
  }
}

function describe(bind: NetListenOptions): string {
  return bind.path ?? `${bind.host ?? ''}:${bind.port ?? ''}`;
}
