// Node TLS options from the transport seam's TLS settings, shared by every TLS scheme
// (`tls://`, `wss://`, and what else needs Node's TLS stack), so each checks them the same way.
import type { Duplex } from 'node:stream';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import type { ClientTlsOptions, ServerTlsOptions } from './transport.js';

/**
 * A client that connects and never finishes the handshake is dropped like one that never
 * registers. The default for a listener not told otherwise (the plane passes `tlsHandshakeTimeoutMs`).
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Server options for a listener at `url`; throws a plain Error for a configuration that would be unsafe. */
export function serverTlsOptions(url: URL, tls: ServerTlsOptions | undefined, handshakeTimeoutMs = TLS_HANDSHAKE_TIMEOUT_MS): TlsOptions {
  if (tls === undefined) throw new Error(`${url.href}: a ${url.protocol}// listener needs a certificate and key`);
  const ca = tls.ca === '' ? undefined : tls.ca;
  // Without our own CA, any certificate from a public CA would pass as a Muster node.
  if (tls.requireClientCert && ca === undefined) {
    throw new Error(`${url.href}: requiring client certificates needs a CA to verify them against`);
  }
  return {
    cert: tls.cert,
    key: tls.key,
    ca,
    requestCert: tls.requireClientCert,
    rejectUnauthorized: tls.requireClientCert,
    minVersion: 'TLSv1.2',
    handshakeTimeout: handshakeTimeoutMs,
  };
}

/**
 * A handshake that fails or times out ends its connection. Node emits `tlsClientError` for a
 * client silent past `handshakeTimeout` but leaves its TCP connection open (Node 20), so a
 * client that never sends its ClientHello would hold a socket for ever without this.
 */
export function dropOnHandshakeFailure(server: { on(event: 'tlsClientError', listener: (err: Error, socket: Duplex) => void): unknown }): void {
  server.on('tlsClientError', (_err, socket) => socket.destroy());
}

/** Only the settings given: an absent `ca` means the system's CAs, an absent `servername` the URL's host. */
export function clientTlsOptions(tls: ClientTlsOptions | undefined): ConnectionOptions {
  const options: ConnectionOptions = {};
  if (tls?.ca !== undefined) options.ca = tls.ca;
  if (tls?.cert !== undefined) options.cert = tls.cert;
  if (tls?.key !== undefined) options.key = tls.key;
  if (tls?.servername !== undefined) options.servername = tls.servername;
  return options;
}
