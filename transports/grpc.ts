// The `grpc` and `grpcs` transports: frames as `muster.v1.Frame` messages on the bidirectional
// `NodeLink/Connect` call (PROTOCOL.md section 1, "gRPC"), one call per connection.
// `grpc://host:port` is plaintext HTTP/2, `grpcs://host:port` TLS (mutual with
// `requireClientCert`). Port 0 picks a free port, and the server's `url` then carries it.
// Compression is gRPC's own (PROTOCOL.md section 8): a dialed channel offers gzip and compresses
// the messages its connection is told to (`compressFrom`); a listener accepts it only when
// allowed to (`compression`, never behind payload encryption) and otherwise answers
// `grpc-accept-encoding: identity`, which stops a grpc-js client compressing at all.
// Registers both schemes on import.
import * as grpc from '@grpc/grpc-js';
import { connectMethod, nodeLinkService } from './grpc-frame.js';
import { GrpcConnection } from './grpc-connection.js';
import { grpcChannelOptions, grpcMessageLimit } from './grpc-options.js';
import { serverCallSide, serverPeerAddress, serverPeerNames, type ServerCall } from './grpc-server-call.js';
import { hostPort, tcpAddress } from './tcp.js';
import {
  registerTransport,
  type ClientTlsOptions,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type ServerTlsOptions,
  type Transport,
  type TransportServer,
} from './transport.js';

/**
 * How long a closed server waits for the calls it leaves to their owners before it cuts
 * them (forceShutdown). Owners close theirs within seconds (a Shutdown frame, then a close
 * bounded by CLOSE_TIMEOUT_MS); this only stops a forgotten call from holding the server forever.
 * The default for a listener not told otherwise (the plane passes `grpcDrainTimeoutMs`).
 */
export const SERVER_DRAIN_TIMEOUT_MS = 30_000;

export const grpcTransport: Transport = {
  schemes: ['grpc', 'grpcs'],

  async listen(url: URL, options: ListenOptions): Promise<TransportServer> {
    const secure = url.protocol === 'grpcs:';
    const { host, port } = tcpAddress(url);
    const credentials = secure ? serverCredentials(url, options.tls) : grpc.ServerCredentials.createInsecure();
    const timeouts = options.timeouts ?? {};
    const keepalive = { timeMs: timeouts.grpcKeepaliveTimeMs, timeoutMs: timeouts.grpcKeepaliveTimeoutMs };
    const server = new grpc.Server(grpcChannelOptions(options.maxFrameBytes, keepalive));
    const compression = options.compression === true;
    server.addService(nodeLinkService, {
      Connect: (call: ServerCall) => {
        if (!compression) call.sendMetadata(identityOnly());
        const conn = new GrpcConnection(call, serverCallSide(call), {
          maxFrameBytes: options.maxFrameBytes,
          maxSendBufferBytes: options.maxSendBufferBytes,
          maxMessageBytes: grpcMessageLimit(options.maxFrameBytes),
          remoteAddress: serverPeerAddress(call),
          peerNames: secure ? serverPeerNames(call) : [],
          closeTimeoutMs: timeouts.closeMs,
        });
        options.onConnection(conn);
      },
    });
    const boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(hostPort(host, port), credentials, (err, bound) => {
        if (err === null) return resolve(bound);
        server.forceShutdown();
        reject(new Error(`cannot listen on ${hostPort(host, port)}: ${err.message}`, { cause: err }));
      });
    });
    return new GrpcServer(server, `${url.protocol}//${hostPort(host, boundPort)}`, timeouts.grpcDrainMs ?? SERVER_DRAIN_TIMEOUT_MS);
  },

  async dial(url: URL, options: DialOptions): Promise<Connection> {
    const secure = url.protocol === 'grpcs:';
    const { host, port } = tcpAddress(url);
    const target = hostPort(host, port);
    const channelOptions: grpc.ChannelOptions = {
      ...grpcChannelOptions(options.maxFrameBytes),
      // Our own HTTP/2 connection per dial, not one shared by every dial to the same target:
      // a Connection is one node's link, and closing it must close that link.
      'grpc.use_local_subchannel_pool': 1,
      // A retried Connect would be a second session without the node knowing.
      'grpc.enable_retries': 0,
      // Offered (the call's grpc-encoding) but used only for the writes the connection allows, and
      // not at all once the server's grpc-accept-encoding leaves gzip out.
      'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip,
    };
    if (secure && options.tls?.servername !== undefined) {
      channelOptions['grpc.ssl_target_name_override'] = options.tls.servername;
    }
    const credentials = secure ? clientCredentials(options.tls) : grpc.credentials.createInsecure();
    const client = new grpc.Client(target, credentials, channelOptions);
    try {
      await whenReady(client, url.href, options.connectTimeoutMs);
    } catch (err) {
      client.close();
      throw err;
    }
    const call = client.makeBidiStreamRequest(
      connectMethod.path,
      connectMethod.requestSerialize,
      connectMethod.responseDeserialize,
    );
    const side = {
      kind: 'client' as const,
      cancel: () => call.cancel(),
      abnormalEnd: () => undefined, // a client call always ends with a status, and a bad one is an error
      onDone: () => client.close(),
    };
    return new GrpcConnection(call, side, {
      maxFrameBytes: options.maxFrameBytes,
      maxSendBufferBytes: options.maxSendBufferBytes,
      maxMessageBytes: grpcMessageLimit(options.maxFrameBytes),
      remoteAddress: target,
    });
  },
};

class GrpcServer implements TransportServer {
  private closed = false;

  constructor(
    private readonly server: grpc.Server,
    readonly url: string,
    private readonly drainMs: number,
  ) {}

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      // tryShutdown stops listening at once and sends GOAWAY on every connection: no new call
      // starts there, but calls already running go on until their owners end them, and its
      // callback only runs once they all have. So this does not wait for it: like the stream
      // server, a closed listener leaves its connections to their owners (who say goodbye
      // first), and only a call still open after SERVER_DRAIN_TIMEOUT_MS is cut.
      const backstop = setTimeout(() => this.server.forceShutdown(), this.drainMs);
      backstop.unref();
      this.server.tryShutdown(() => clearTimeout(backstop));
    }
    return Promise.resolve();
  }
}

/**
 * The response headers of a listener that does not take compressed messages. grpc-js's server
 * names `identity,deflate,gzip` unless told otherwise; a grpc-js client that reads `identity`
 * sends every later message uncompressed. (A message compressed before these headers arrived is
 * still inflated by grpc-js, to the same limit: grpc-js gives a handler no way to refuse it.)
 */
function identityOnly(): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('grpc-accept-encoding', 'identity');
  return metadata;
}

function serverCredentials(url: URL, tls: ServerTlsOptions | undefined): grpc.ServerCredentials {
  if (tls === undefined) throw new Error(`${url.href}: grpcs:// needs a certificate and key (tls options)`);
  if (tls.requireClientCert && tls.ca === undefined) {
    throw new Error(`${url.href}: requireClientCert needs a CA bundle (tls.ca) to verify client certificates`);
  }
  // grpc-js requests a client certificate only when it requires one: without
  // requireClientCert, no certificate is asked for and peerNames stay empty.
  return grpc.ServerCredentials.createSsl(
    tls.ca === undefined ? null : Buffer.from(tls.ca),
    [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }],
    tls.requireClientCert,
  );
}

function clientCredentials(tls: ClientTlsOptions | undefined): grpc.ChannelCredentials {
  const pem = (text: string | undefined): Buffer | null => (text === undefined ? null : Buffer.from(text));
  return grpc.credentials.createSsl(pem(tls?.ca), pem(tls?.key), pem(tls?.cert));
}

/**
 * Connects the client's channel, failing fast when the connection attempt fails (refused,
 * TLS handshake) rather than retrying until the timeout, as grpc-js would on its own.
 */
function whenReady(client: grpc.Client, target: string, timeoutMs: number): Promise<void> {
  const channel = client.getChannel();
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) resolve();
      else reject(err);
    };
    const check = (): void => {
      if (settled) return;
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) return settle();
      if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
        void failureReason(client).then((reason) => settle(new Error(`connect to ${target} failed: ${reason}`)));
        return;
      }
      channel.watchConnectivityState(state, Infinity, check);
    };
    // Our own timer, not the watch's deadline: grpc-js unrefs its timers, and a process
    // waiting only for this dial must not exit with the promise unsettled.
    const timer =
      timeoutMs > 0 && Number.isFinite(timeoutMs)
        ? setTimeout(() => settle(new Error(`connect to ${target} timed out after ${timeoutMs} ms`)), timeoutMs)
        : undefined;
    check();
  });
}

/**
 * The last connection error of a failed channel. grpc-js keeps it for the status of the next
 * call, so a call started now (with no connection to open, it never reaches a server) fails with it.
 */
function failureReason(client: grpc.Client): Promise<string> {
  return new Promise((resolve) => {
    const probe = client.makeBidiStreamRequest(
      connectMethod.path,
      connectMethod.requestSerialize,
      connectMethod.responseDeserialize,
    );
    const settle = (reason: string): void => {
      probe.cancel(); // in case the channel came up meanwhile: the probe must not stay a session
      resolve(reason);
    };
    // e.g. "No connection established. Last error: Error: connect ECONNREFUSED ..."
    probe.on('error', (err: grpc.ServiceError) => settle(err.details.replace(/\s*Resolution note:\s*$/, '')));
    probe.on('status', () => settle('unavailable'));
    probe.resume();
  });
}

registerTransport(grpcTransport);
