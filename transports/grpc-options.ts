// Channel options shared by the gRPC server and client: message-size limits (PROTOCOL.md
// "Size limits on message transports") and HTTP/2 keepalive, so that a half-open
// connection (a peer host that vanished without a FIN or RST) is noticed by both sides.
import type { ChannelOptions } from '@grpc/grpc-js';

/**
 * Send an HTTP/2 PING after this long without a frame from the peer. Heartbeats catch a
 * dead node at the session level, but a node waiting for the control plane, or a control
 * plane whose writes sit in a kernel buffer, would otherwise wait for TCP retransmissions
 * to give up (about 15 minutes on Linux). 10 s costs one 17-byte frame per idle connection.
 */
export const KEEPALIVE_TIME_MS = 10_000;
/** Close the connection when a PING is not answered within this long: a half-open connection is gone within 20 s. */
export const KEEPALIVE_TIMEOUT_MS = 10_000;
/**
 * Ping even without an active call. A Muster connection always has its one call, but the
 * HTTP/2 connection is set up before it, and a connection that lost its call must not linger.
 */
export const KEEPALIVE_PERMIT_WITHOUT_CALLS = 1;
/**
 * The shortest PING interval a server accepts from a client before it answers "too many
 * pings" (GOAWAY ENHANCE_YOUR_CALM). Below our KEEPALIVE_TIME_MS so that our own clients are
 * never punished by a server or proxy that enforces it (gRPC C-core and Go default to
 * 5 minutes). grpc-js 1.14 itself does not enforce it; it is set for the peers that do.
 */
export const MIN_PING_INTERVAL_WITHOUT_DATA_MS = 5_000;

/**
 * Bytes a Frame message adds around its body: field tags, the body's length varint and the
 * codec and encrypted fields (10 at most; the rest is slack).
 */
export const FRAME_ENVELOPE_BYTES = 64;

/**
 * The transport's own message limit: 4 × maxFrameBytes plus the envelope, so that a body
 * over maxFrameBytes still arrives and is answered with `frame_too_large`, and only a much
 * larger one is cut by grpc-js (RESOURCE_EXHAUSTED).
 */
export function grpcMessageLimit(maxFrameBytes: number): number {
  return 4 * maxFrameBytes + FRAME_ENVELOPE_BYTES;
}

export interface GrpcKeepalive {
  timeMs: number;
  timeoutMs: number;
}

/** Channel options; `keepalive` defaults to KEEPALIVE_TIME_MS and KEEPALIVE_TIMEOUT_MS (the plane passes its settings). */
export function grpcChannelOptions(maxFrameBytes: number, keepalive?: Partial<GrpcKeepalive>): ChannelOptions {
  const limit = grpcMessageLimit(maxFrameBytes);
  const timeMs = keepalive?.timeMs ?? KEEPALIVE_TIME_MS;
  return {
    'grpc.max_receive_message_length': limit,
    'grpc.max_send_message_length': limit,
    'grpc.keepalive_time_ms': timeMs,
    'grpc.keepalive_timeout_ms': keepalive?.timeoutMs ?? KEEPALIVE_TIMEOUT_MS,
    'grpc.keepalive_permit_without_calls': KEEPALIVE_PERMIT_WITHOUT_CALLS,
    // Half our own interval at most, so that our clients are never told "too many pings".
    'grpc.http2.min_ping_interval_without_data_ms': Math.min(MIN_PING_INTERVAL_WITHOUT_DATA_MS, Math.floor(timeMs / 2)),
  };
}
