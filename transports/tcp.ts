// The `tcp` transport: stream frames over plain TCP (`tcp://host:port`; port 0 picks a free
// port, and the server's `url` then carries it). Registers its scheme on import.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connectStream } from './stream-connection.js';
import { listenStream } from './stream-server.js';
import {
  registerTransport,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type Transport,
  type TransportServer,
} from './transport.js';

export interface TcpAddress {
  host: string;
  port: number;
}

/** Host and port of a `scheme://host:port` URL (IPv6 hosts in brackets); throws a plain Error when either is missing. */
export function tcpAddress(url: URL): TcpAddress {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port);
  if (host === '' || url.port === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${url.href}: expected ${url.protocol}//host:port`);
  }
  return { host, port };
}

/** `host:port`, with an IPv6 host in brackets. */
export function hostPort(host: string | undefined, port: number | undefined): string {
  const h = host ?? 'unknown';
  return `${h.includes(':') ? `[${h}]` : h}:${port ?? 0}`;
}

export function tcpPeerAddress(socket: Socket): string {
  return hostPort(socket.remoteAddress, socket.remotePort);
}

/** The URL of a bound server, under `scheme`, with the port it really got. */
export function boundUrl(scheme: string, address: AddressInfo | string | null): string {
  if (address === null || typeof address === 'string') throw new Error('server is not bound to a TCP address');
  return `${scheme}://${hostPort(address.address, address.port)}`;
}

export const tcpTransport: Transport = {
  schemes: ['tcp'],

  async listen(url: URL, options: ListenOptions): Promise<TransportServer> {
    const { host, port } = tcpAddress(url);
    return listenStream(
      {
        server: createServer(),
        bind: { host, port },
        url: (server) => boundUrl('tcp', server.address()),
        peerAddress: tcpPeerAddress,
      },
      options,
    );
  },

  async dial(url: URL, options: DialOptions): Promise<Connection> {
    const { host, port } = tcpAddress(url);
    return connectStream(connect({ host, port }), { ...options, target: url.href, peerAddress: tcpPeerAddress });
  },
};

registerTransport(tcpTransport);
