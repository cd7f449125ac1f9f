// The listening side shared by every stream transport (TCP, Unix, TLS): binds a net.Server
// and wraps each accepted socket in a StreamConnection for the owner's `onConnection`.
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
  /** Names of the peer's verified client certificate (TLS); none when absent. */
  peerNames?(socket: Socket): readonly string[];
  /** Runs after the listener has closed, e.g. to remove a socket file. */
  cleanup?(): void;
  /**
   * The umask while binding: a Unix socket file gets its mode from it, and a mode set after
   * binding would leave a moment in which others may connect. Node binds synchronously inside
   * `listen`, so the process's umask is changed for that call only.
   */
  bindUmask?: number;
}

export function listenStream(endpoint: StreamEndpoint, options: ListenOptions): Promise<TransportServer> {
  const { server } = endpoint;
  const accepted = new AcceptQueue((socket) => {
    const conn = new StreamConnection(socket, {
      maxFrameBytes: options.maxFrameBytes,
      maxSendBufferBytes: options.maxSendBufferBytes,
      remoteAddress: endpoint.peerAddress(socket),
      peerNames: endpoint.peerNames?.(socket),
      ...(options.httpNotice === undefined ? {} : { httpNotice: options.httpNotice }),
      closeTimeoutMs: options.timeouts?.closeMs,
    });
    options.onConnection(conn);
  });
  server.on(endpoint.connectionEvent ?? 'connection', (socket: Socket) => accepted.push(socket));
  return new Promise((resolve, reject) => {
    const onListenError = (err: Error): void =>
      reject(new Error(`cannot listen on ${describe(endpoint.bind)}: ${err.message}`, { cause: err }));
    server.once('error', onListenError);
    const onListening = (): void => {
      server.off('error', onListenError);
      // An accept failure (e.g. EMFILE) must not bring the process down; the listener stays up.
      server.on('error', (err) => process.emitWarning(err));
      resolve(new StreamServer(endpoint));
    };
    const previousUmask = endpoint.bindUmask === undefined ? undefined : process.umask(endpoint.bindUmask);
    try {
      server.listen(options.backlog === undefined ? endpoint.bind : { ...endpoint.bind, backlog: options.backlog }, onListening);
    } finally {
      if (previousUmask !== undefined) process.umask(previousUmask);
    }
  });
}

/** Accepted sockets handed to the owner per event-loop turn, at most. */
export const HANDOVER_BATCH = 64;

/**
 * Between the kernel's accept queue and the owner. In a reconnect storm the kernel queue
 * (the listen backlog, capped by net.core.somaxconn) overflows while the plane is busy
 * setting up the sessions of the connections it already took, and a connection dropped
 * there waits for the client's SYN retransmission (1 s, then 3, 7, 15 s...) or is lost.
 * So accepting does no more than queue the socket here, and the owner gets the sockets
 * HANDOVER_BATCH per turn, with libuv's accept loop (which takes every pending connection)
 * running between the batches: the kernel queue stays short, and the wait is in our queue,
 * where nothing is dropped. Nothing is read from a socket before its owner starts it.
 */
class AcceptQueue {
  private readonly waiting: Socket[] = [];
  private next = 0;
  private scheduled = false;

  constructor(private readonly handOver: (socket: Socket) => void) {}

  push(socket: Socket): void {
    // An error while it waits (a reset) must not be an unhandled 'error' event; it is left out then.
    socket.on('error', ignore);
    this.waiting.push(socket);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.drain);
  }

  private readonly drain = (): void => {
    const end = Math.min(this.waiting.length, this.next + HANDOVER_BATCH);
    for (; this.next < end; this.next++) {
      const socket = this.waiting[this.next]!;
      socket.off('error', ignore);
      // Closed while waiting: the owner never saw it, and its close has been and gone.
      if (socket.destroyed) continue;
      try {
        this.handOver(socket);
      } catch (err) {
        // The owner's bug, as if thrown from the 'connection' event; the sockets after it still go on.
        socket.destroy();
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    if (this.next < this.waiting.length) {
      setImmediate(this.drain);
      return;
    }
    this.waiting.length = 0;
    this.next = 0;
    this.scheduled = false;
  };
}

function ignore(): void {}

class StreamServer implements TransportServer {
  readonly url: string;
  private closed = false;

  constructor(private readonly endpoint: StreamEndpoint) {
    this.url = endpoint.url(endpoint.server);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      // Stops accepting at once. Not waiting for net's 'close' event, which only fires once every
      // connection has ended: the owners of those connections close them, after saying goodbye.
      this.endpoint.server.close();
      this.endpoint.cleanup?.();
    }
    return Promise.resolve();
  }
}

function describe(bind: NetListenOptions): string {
  return bind.path ?? `${bind.host ?? ''}:${bind.port ?? ''}`;
}
