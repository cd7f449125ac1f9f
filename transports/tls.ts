// The `tls` transport: stream frames over TLS on TCP (`tls://host:port`), the TCP transport's
// framing and connections with a TLS socket underneath. With `requireClientCert` it is mutual
// TLS: the handshake refuses clients without a certificate from `ca`, and each connection's
// `peerNames` carries the names its certificate vouches for. Registers its scheme on import.
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { connectStream } from './stream-connection.js';
import { listenStream } from './stream-server.js';
import { peerNamesOf } from './peer-names.js';
import { clientTlsOptions, dropOnHandshakeFailure, serverTlsOptions } from './tls-options.js';
import { boundUrl, tcpAddress, tcpPeerAddress } from './tcp.js';
import {
  registerTransport,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type Transport,
  type TransportServer,
} from './transport.js';

export const tlsTransport: Transport = {
  schemes: ['tls'],

  async listen(url: URL, options: ListenOptions): Promise<TransportServer> {
    const { host, port } = tcpAddress(url);
    const server = createServer(serverTlsOptions(url, options.tls, options.timeouts?.tlsHandshakeMs));
    dropOnHandshakeFailure(server);
    return listenStream(
      {
        server,
        bind: { host, port },
        connectionEvent: 'secureConnection',
        url: (s) => boundUrl('tls', s.address()),
        peerAddress: tcpPeerAddress,
        peerNames: (socket: Socket) => peerNamesOf(socket as TLSSocket),
      },
      options,
    );
  },

  async dial(url: URL, options: DialOptions): Promise<Connection> {
    const { host, port } = tcpAddress(url);
    const socket = connect({ host, port, ...clientTlsOptions(options.tls) });
    return connectStream(socket, {
      ...options,
      target: url.href,
      readyEvent: 'secureConnect',
      peerAddress: tcpPeerAddress,
    });
  },
};

/** The listener's TLS settings; a plain Error for the configuration mistakes. */
registerTransport(tlsTransport);
