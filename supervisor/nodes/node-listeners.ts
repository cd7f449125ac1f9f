// The node listeners of the control plane, from its settings: which URLs it listens on
// (TCP, WebSocket, gRPC, Unix; with a certificate, TLS on the first three), and how each
// accepted connection is wrapped (payload encryption when a key file is configured).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import '../../transports/builtin.js';
import { encrypted } from '../../transports/encrypted-connection.js';
import { loadEncryptionKey, PayloadCipher } from '../../transports/payload-cipher.js';
import { transportFor, type Connection, type ListenOptions, type ServerTlsOptions, type TransportServer } from '../../transports/transport.js';
import { LISTENER_OFF, type Config } from '../config.js';

/**
 * Opens every configured node listener, handing each accepted connection to `accept`, and
 * pushes each onto `opened` as it opens: when one fails (e.g. a port taken), `opened` holds
 * those the caller must close.
 */
export async function listenForNodes(
  config: Config,
  accept: (conn: Connection) => void,
  opened: TransportServer[],
): Promise<void> {
  const tls = serverTls(config);
  for (const url of listenerUrls(config, tls !== undefined)) {
    const scheme = url.protocol.slice(0, -1);
    const onConnection = encryptingIfConfigured(config, (conn) => {
      transports.set(conn, scheme);
      accept(conn);
    });
    const options: ListenOptions = {
      maxFrameBytes: config.maxFrameBytes,
      maxSendBufferBytes: config.maxSendBufferBytes,
      onConnection,
      keepaliveIntervalMs: config.wsPingIntervalMs,
      httpNotice: httpNotice(config),
      // WebSocket's own compression, never behind payload encryption (PROTOCOL.md section 8).
      compression: config.encryptKeyFile === '',
      // gRPC's server (grpc-js) sets its own backlog; the other listeners take this one.
      backlog: config.listenBacklog,
      timeouts: {
        tlsHandshakeMs: config.tlsHandshakeTimeoutMs,
        closeMs: config.closeTimeoutMs,
        grpcKeepaliveTimeMs: config.grpcKeepaliveTimeMs,
        grpcKeepaliveTimeoutMs: config.grpcKeepaliveTimeoutMs,
        grpcDrainMs: config.grpcDrainTimeoutMs,
      },
    };
    if (tls !== undefined) options.tls = tls;
    opened.push(await transportFor(url).listen(url, options));
  }
}

/** What an HTTP client that reached a node port reads: where it meant to go. */
function httpNotice(config: Config): string {
  const api = config.http === LISTENER_OFF ? 'the admin API is off' : `the admin API is at http://${config.http}`;
  return `This is a Muster node port: runner agents connect here with the node protocol (muster agent --url). It does not speak HTTP; ${api}.`;
}

/** The scheme of the listener each accepted connection came in on, for the node view. */
const transports = new WeakMap<Connection, string>();

/** `tcp`, `tls`, `unix`, `ws`, `wss`, `grpc` or `grpcs`; empty for a connection no listener accepted. */
export function transportOf(conn: Connection): string {
  return transports.get(conn) ?? '';
}

/** Node listeners: with a certificate, TCP, WebSocket and gRPC serve TLS; the Unix socket stays plain. */
export function listenerUrls(config: Config, secure: boolean): URL[] {
  const urls: URL[] = [];
  if (config.tcp !== LISTENER_OFF) urls.push(new URL(`${secure ? 'tls' : 'tcp'}://${config.tcp}`));
  if (config.ws !== LISTENER_OFF) urls.push(new URL(`${secure ? 'wss' : 'ws'}://${config.ws}/v1/connect`));
  if (config.grpc !== LISTENER_OFF) urls.push(new URL(`${secure ? 'grpcs' : 'grpc'}://${config.grpc}`));
  if (config.unix !== LISTENER_OFF) urls.push(new URL(`unix://${resolvePath(config.unix)}`));
  return urls;
}

/**
 * `accept` behind payload encryption (PROTOCOL.md section 6) when a key file is configured:
 * then every connection of every node listener gets its own cipher (its own nonce sequence).
 */
function encryptingIfConfigured(config: Config, accept: (conn: Connection) => void): (conn: Connection) => void {
  if (config.encryptKeyFile === '') return accept;
  const key = loadEncryptionKey(config.encryptKeyFile);
  return (conn) => accept(encrypted(conn, new PayloadCipher(key)));
}

/** TLS settings from the certificate files, or undefined when TLS is not configured. */
function serverTls(config: Config): ServerTlsOptions | undefined {
  if (config.tlsCert === '' && config.tlsKey === '') return undefined;
  if (config.tlsCert === '' || config.tlsKey === '') throw new Error('TLS needs both tlsCert and tlsKey');
  const tls: ServerTlsOptions = {
    cert: readFileSync(config.tlsCert, 'utf8'),
    key: readFileSync(config.tlsKey, 'utf8'),
    requireClientCert: config.requireClientCert,
  };
  if (config.tlsCa !== '') tls.ca = readFileSync(config.tlsCa, 'utf8');
  return tls;
}

function resolvePath(path: string): string {
  return path.startsWith('/') ? path : join(process.cwd(), path);
}

export function hostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  if (at < 0) throw new Error(`expected HOST:PORT, got ${value}`);
  const port = Number(value.slice(at + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port in ${value}`);
  return { host: value.slice(0, at).replace(/^\[|\]$/g, ''), port };
}

