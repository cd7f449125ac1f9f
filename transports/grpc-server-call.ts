// The server side of one `Connect` call: its peer's address and certificate names, and the
// two things grpc-js does not offer a handler: resetting its call, and telling a reset from a
// clean end.
import { constants as http2Constants } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { GrpcCallSide } from './grpc-connection.js';
import type { GrpcFrame } from './grpc-frame.js';
import { peerNamesOf } from './peer-names.js';
import { hostPort } from './tcp.js';

export type ServerCall = ServerDuplexStream<GrpcFrame, GrpcFrame>;

/** `call.getPeer()` (`1.2.3.4:5`, or `::1:5` for IPv6) as `host:port` with an IPv6 host in brackets, like the TCP transport. */
export function serverPeerAddress(call: ServerCall): string {
  const peer = call.getPeer();
  const at = peer.lastIndexOf(':');
  const port = Number(peer.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port)) return peer; // 'unknown'
  return hostPort(peer.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port);
}

/**
 * Subject CN and DNS SANs of the client certificate. grpc-js exposes it through the auth
 * context only when the TLS socket verified it (`authorized`), so it is verified here.
 */
export function serverPeerNames(call: ServerCall): string[] {
  const cert = call.getAuthContext().sslPeerCertificate;
  if (cert === undefined) return [];
  // peer-names reads a TLSSocket; the auth context holds the same certificate, already verified.
  const verified: Pick<TLSSocket, 'authorized'> & { getPeerCertificate(): typeof cert } = {
    authorized: true,
    getPeerCertificate: () => cert,
  };
  return peerNamesOf(verified as unknown as TLSSocket);
}

export function serverCallSide(call: ServerCall): GrpcCallSide {
  return {
    kind: 'server',
    cancel: () => resetServerCall(call),
    abnormalEnd: () =>
      endedAbnormally(call)
        ? 'the call ended without our status: the peer cancelled it or went away, or grpc-js ' +
          'ended it (RESOURCE_EXHAUSTED for a message over the gRPC limit)'
        : undefined,
  };
}

// grpc-js 1.14 gives a handler neither of the two things below: a call's HTTP/2 stream is
// reached through `ServerDuplexStreamImpl.call.stream`, private to grpc-js (the tests of an
// abrupt peer exit and of a peer that stops reading fail if that changes).
interface Http2StreamView {
  destroyed: boolean;
  /** Set once the stream closed: NGHTTP2_NO_ERROR when it ended with its status, else the reset code. */
  rstCode?: number;
  close(code: number): void;
}

function http2StreamOf(call: ServerCall): Partial<Http2StreamView> | undefined {
  return (call as unknown as { call?: { stream?: Partial<Http2StreamView> } }).call?.stream;
}

/**
 * True when the call did not end with the status our `end()` sent: grpc-js ended it with its
 * own (RESOURCE_EXHAUSTED for a message over the limit), or a reset or a lost connection did.
 * A handler sees all of these as 'cancelled', and a lost connection may even look like a
 * half-close first (which we answer with `end()`); only the HTTP/2 stream's close code tells
 * that one apart. Without the stream: whether our side finished.
 */
function endedAbnormally(call: ServerCall): boolean {
  if (!call.writableEnded) return true;
  const rstCode = http2StreamOf(call)?.rstCode;
  if (typeof rstCode === 'number') return rstCode !== http2Constants.NGHTTP2_NO_ERROR;
  return !call.writableFinished;
}

/**
 * Ends the call at once with RST_STREAM (CANCEL), dropping what is queued. A handler can only
 * end a call with a status, sent after every queued message, which a peer that does not read
 * never lets happen. Without the stream, destroying our side still frees the queue and reports
 * the close; the peer then learns it from keepalive or its own limits.
 */
function resetServerCall(call: ServerCall): void {
  const stream = http2StreamOf(call);
  if (stream !== undefined && typeof stream.close === 'function' && stream.destroyed === false) {
    stream.close(http2Constants.NGHTTP2_CANCEL);
  }
  call.destroy();
}
