// Node TLS options from the transport seam's TLS settings, shared by every TLS scheme
// (`tls://`, `wss://`, and what else needs Node's TLS stack), so each checks them the same way.
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import type { ClientTlsOptions, ServerTlsOptions } from './transport.js';

/** A client that connects and never finishes the handshake is dropped like one that never registers. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Server options for a listener at `url`; throws a plain Error for a configuration that would be unsafe. */
export function serverTlsOptions(url: URL, tls: ServerTlsOptions | undefined): TlsOptions {
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
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
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
