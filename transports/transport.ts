// The one seam between sockets and the rest of Muster. A transport moves frames
// (a codec byte and a body) and knows nothing of what they mean. Each transport
// lives in one file and registers its URL schemes here, as grpc-js does with resolvers.
import type { MusterError } from '../protocol/errors.js';

/** What a connection reports to its owner. Called synchronously from socket events. */
export interface FrameSink {
  /** One whole frame: `codecByte` as on the wire (with 0x80 when encrypted), and the body. */
  frame(codecByte: number, body: Uint8Array): void;
  /** A framing error (oversize, unknown codec, zero length). The connection stays open until the owner closes it. */
  error(err: MusterError): void;
  /** The connection is closed, by either side; `err` is set when the close was abnormal. */
  closed(err?: Error): void;
}

/** One established connection, on either side (control plane or node). */
export interface Connection {
  /** Unique per process, for logs (`conn_id`). */
  readonly id: string;
  /** The peer's address as `host:port`, or the socket path, for logs and allow-lists. */
  readonly remoteAddress: string;
  readonly isClosed: boolean;
  /**
   * Names of a verified client certificate (subject CN and DNS SANs) on a mutual-TLS
   * listener; empty otherwise. Registration checks them against the token's `sub`.
   */
  readonly peerNames: readonly string[];
  /** Starts delivering frames to `sink`; frames that arrived earlier are delivered first. */
  start(sink: FrameSink): void;
  /**
   * Queues one frame. Never blocks. When more than the send-buffer limit is queued
   * the connection is closed (a peer that does not read must not grow our memory).
   * `compressible: false` asks a transport's own compression (`compressFrom`) to leave this
   * body as it is: bytes that are most often compressed already (artifact files).
   */
  send(codecByte: number, body: Uint8Array, compressible?: boolean): void;
  /** Flushes what is queued (bounded by a timeout), then closes. */
  close(): Promise<void>;
  /**
   * Stops reading from the peer for `ms` (a later call replaces the wait): the transport's flow
   * control then holds a flooding sender back, so its bytes cost nothing while it is over its
   * rate. What was read already is still delivered. Transports without it read on.
   */
  pauseReading?(ms: number): void;
  /**
   * Called once before `start` by the encryption layer (PROTOCOL.md section 6): from now on
   * every frame is encrypted. Only a transport whose framing then reads differently has it:
   * WebSocket, where an encrypted frame is a binary message led by its codec byte.
   */
  useEncryptedFraming?(): void;
  /**
   * Transports whose own compression is switched on per message (gRPC's message compression,
   * dialing side) send every body of at least `minBytes` compressed from now on, where the
   * peer accepts it (its `grpc-accept-encoding`), and smaller ones as they are. The node calls
   * it with `compress_min_bytes` once its RegisterAck came. The encryption layer does not
   * pass it on: nothing is compressed on an encrypting connection (PROTOCOL.md section 8).
   */
  compressFrom?(minBytes: number): void;
}

/** A listening endpoint that hands out connections. */
export interface TransportServer {
  /** The URL clients dial, with the real port when listening on port 0. */
  readonly url: string;
  /** Stops accepting connections. Connections already handed to `onConnection` stay open: their owner closes them. */
  close(): Promise<void>;
}

/** Server-side TLS, for `tls://`, `wss://` and `grpcs://` listeners. PEM text, not paths. */
export interface ServerTlsOptions {
  cert: string;
  key: string;
  /** CA bundle that client certificates must chain to. */
  ca?: string;
  /** Mutual TLS: refuse clients without a certificate signed by `ca`. */
  requireClientCert: boolean;
}

/** Client-side TLS, for dialing `tls://`, `wss://` and `grpcs://`. PEM text, not paths. */
export interface ClientTlsOptions {
  /** CA bundle that the server's certificate must chain to; default the system's. */
  ca?: string;
  /** Client certificate and key, for mutual TLS. */
  cert?: string;
  key?: string;
  /** Server name to verify, when it differs from the URL's host. */
  servername?: string;
}

export interface ListenOptions {
  maxFrameBytes: number;
  /** Bytes a connection may have queued for sending before it is closed. */
  maxSendBufferBytes: number;
  onConnection(conn: Connection): void;
  /** Required by the TLS schemes, ignored by the others. */
  tls?: ServerTlsOptions;
  /**
   * Keepalive ping interval of transports that ping at their own level (WebSocket), so a
   * half-open connection is noticed; 0 turns it off; undefined means the transport's default.
   */
  keepaliveIntervalMs?: number;
  /** Stream transports: the text an HTTP request gets (an HTTP 400) instead of frame errors. */
  httpNotice?: string;
  /**
   * Pending connections the kernel queues before they are accepted (listen(2) backlog; capped
   * by net.core.somaxconn). A reconnect storm overflows Node's default of 511. Undefined: Node's default.
   */
  backlog?: number;
  /** The listener's waits; each undefined one is the transport's default (the control plane passes its settings). */
  timeouts?: ListenTimeouts;
  /**
   * Transports that compress at their own level may agree to it with a client that offers it
   * (WebSocket `permessage-deflate`, RFC 7692; gRPC message compression, whose listener
   * otherwise answers `grpc-accept-encoding: identity`); never behind payload encryption
   * (PROTOCOL.md 8). Default false.
   */
  compression?: boolean;
}

export interface ListenTimeouts {
  /** A TLS client that does not finish its handshake within this long is dropped. */
  tlsHandshakeMs?: number;
  /** A connection's graceful close (unsent data flushed, the peer's close awaited) is cut after this long. */
  closeMs?: number;
  /** gRPC: HTTP/2 PING after this long without a frame, and close when it is not answered within the timeout. */
  grpcKeepaliveTimeMs?: number;
  grpcKeepaliveTimeoutMs?: number;
  /** gRPC: on close, calls still open after this long are cut. */
  grpcDrainMs?: number;
}

export interface DialOptions {
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** Give up connecting after this long. */
  connectTimeoutMs: number;
  /** Used by the TLS schemes, ignored by the others. */
  tls?: ClientTlsOptions;
}

/** A family of URL schemes served by one implementation. */
export interface Transport {
  readonly schemes: readonly string[];
  listen(url: URL, options: ListenOptions): Promise<TransportServer>;
  dial(url: URL, options: DialOptions): Promise<Connection>;
}

const registry = new Map<string, Transport>();

export function registerTransport(transport: Transport): void {
  for (const scheme of transport.schemes) registry.set(scheme, transport);
}

/** The transport for a URL's scheme (`tcp:` ...). Throws a plain Error for configuration mistakes. */
export function transportFor(url: URL): Transport {
  const scheme = url.protocol.replace(/:$/, '');
  const transport = registry.get(scheme);
  if (transport === undefined) {
    throw new Error(`no transport for scheme ${scheme}:// (known: ${[...registry.keys()].join(', ')})`);
  }
  return transport;
}
