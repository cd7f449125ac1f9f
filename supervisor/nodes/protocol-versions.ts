// Version negotiation (PROTOCOL.md section 3, `RegisterAck`): the plane speaks versions 1 and 2
// and answers with the highest both sides speak; with none in common, `unsupported_version`,
// fatal, naming the plane's. A version 1 session's RegisterAck carries none of the version 2
// fields, so a version 1 node sees exactly what it saw before version 2 existed.
// Wire features (section 8) are turned on only in a version 2 session, and only those the node
// offered and the plane can give on this connection: `deflate` on stream transports (TCP, TLS,
// Unix) without payload encryption (compressing text that mixes secrets with output others
// influence, then encrypting it, leaks through sizes); WebSocket and gRPC have their own
// compression; `batch` everywhere. A frame or message that uses a feature not turned on is refused as PROTOCOL.md
// says (`unsupported_codec`, `unknown_type`).
import { MusterError } from '../../protocol/errors.js';
import type { MessageData, WireFeature } from '../../protocol/messages.js';

/** The versions this plane speaks, lowest first. */
export const PLANE_VERSIONS: readonly number[] = [1, 2];

/**
 * The wire features the plane can turn on for a connection over `transport` (a URL scheme);
 * `artifacts` on every transport when the plane has somewhere to keep them (`plane.artifacts`).
 */
export function offerableFeatures(transport: string, encrypted: boolean, plane: { artifacts?: boolean } = {}): ReadonlySet<WireFeature> {
  const features = new Set<WireFeature>();
  if (!encrypted && (transport === 'tcp' || transport === 'tls' || transport === 'unix')) features.add('deflate');
  // Several messages in one frame: the same on every transport, encrypted or not.
  features.add('batch');
  if (plane.artifacts === true) features.add('artifacts');
  return features;
}

/** What a RegisterAck tells of version 2 (section 8's defaults). */
export const COMPRESS_MIN_BYTES = 1024;
export const ARTIFACT_WINDOW_BYTES = 4 * 1024 * 1024;

/** A session's agreement: its version and the wire features turned on. */
export interface Negotiated {
  version: 1 | 2;
  wireFeatures: WireFeature[];
}

/** The agreement for a `RegisterNode`; throws `unsupported_version` when there is none. */
export function negotiate(
  data: Pick<MessageData<'RegisterNode'>, 'protocol_versions' | 'wire_features'>,
  offerable: ReadonlySet<WireFeature> = new Set(),
): Negotiated {
  const offered = data.protocol_versions ?? [1];
  const common = PLANE_VERSIONS.filter((v) => offered.includes(v));
  const version = common.at(-1);
  if (version === undefined) {
    throw new MusterError(
      'unsupported_version',
      `no protocol version in common: this control plane speaks ${PLANE_VERSIONS.join(', ')}; the node offered ${offered.length === 0 ? 'none' : offered.join(', ')}`,
      { field: 'data.protocol_versions' },
    );
  }
  if (version === 1) return { version: 1, wireFeatures: [] };
  const wireFeatures = [...new Set(data.wire_features ?? [])].filter((f): f is WireFeature => offerable.has(f as WireFeature));
  return { version: 2, wireFeatures };
}

/** The RegisterAck fields of the agreement: none beyond `protocol_version` for version 1. */
export function ackFields(agreed: Negotiated): Pick<MessageData<'RegisterAck'>, 'protocol_version' | 'wire_features' | 'compress_min_bytes' | 'artifact_window_bytes'> {
  if (agreed.version === 1) return { protocol_version: 1 };
  return {
    protocol_version: 2,
    wire_features: agreed.wireFeatures,
    compress_min_bytes: COMPRESS_MIN_BYTES,
    artifact_window_bytes: ARTIFACT_WINDOW_BYTES,
  };
}
