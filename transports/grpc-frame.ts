// The gRPC contract of PROTOCOL.md section 1, read from `protocol/muster.proto` (the one
// source) at module load, and the mapping between its `Frame` message and the codec byte
// every other transport speaks: `codec` is the low 7 bits, `encrypted` is bit 0x80.
import { fileURLToPath } from 'node:url';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { CODEC_JSON, CODEC_MSGPACK, ENCRYPTED_BIT } from '../protocol/codec.js';

/** One `muster.v1.Frame` as proto-loader hands it over and takes it back. */
export interface GrpcFrame {
  /** `Codec` enum as a number: 0 unspecified, 1 JSON, 2 MessagePack; other numbers may arrive. */
  codec: number;
  body: Uint8Array;
  encrypted: boolean;
}

export const PROTO_PATH = fileURLToPath(new URL('../protocol/muster.proto', import.meta.url));
export const SERVICE_NAME = 'muster.v1.NodeLink';

// defaults: proto3 leaves zero values off the wire, and a frame must still read as
// {codec: 0, body: <empty>, encrypted: false}. Bytes stay Buffers, enums stay numbers.
const definition = loadSync(PROTO_PATH, { keepCase: true, defaults: true, enums: Number, bytes: Buffer, longs: Number });

/** The `NodeLink` service, as `grpc.Server#addService` takes it. */
export const nodeLinkService = definition[SERVICE_NAME] as Record<'Connect', MethodDefinition<GrpcFrame, GrpcFrame>>;
/** `Connect`: path, serializer and deserializer for both directions (the same message). */
export const connectMethod = nodeLinkService.Connect;

/** A received Frame's codec byte, or undefined for `CODEC_UNSPECIFIED` and numbers this version does not know. */
export function codecByteOf(frame: GrpcFrame): number | undefined {
  if (frame.codec !== CODEC_JSON && frame.codec !== CODEC_MSGPACK) return undefined;
  return frame.encrypted ? frame.codec | ENCRYPTED_BIT : frame.codec;
}

/** The Frame that carries `body` under `codecByte`. */
export function frameOf(codecByte: number, body: Uint8Array): GrpcFrame {
  return { codec: codecByte & ~ENCRYPTED_BIT, body, encrypted: (codecByte & ENCRYPTED_BIT) !== 0 };
}
