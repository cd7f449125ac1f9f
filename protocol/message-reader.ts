// A received plaintext body to a validated message, in the one order that keeps the cost of
// bad input bounded: the structure is walked first (body-scan.ts) and an abusive body refused
// before it is decoded; then it is decoded (codec.ts) and validated (validator.ts). A body whose
// type the walk could not read (an escaped key) is held to its type's size after decoding.
// Bodies of at most SCAN_MIN_BYTES are not walked: no type's size is smaller, and decoding so
// few bytes costs microseconds whatever they hold, while the walk would cost the common small
// frames (heartbeats) a third of their throughput.
import { decodeBody, type Codec } from './codec.js';
import { MusterError } from './errors.js';
import { BODY_LIMITS, bodyLimitOf } from './message-limits.js';
import type { BatchMessage, NodeMessage, PlaneMessage } from './messages.js';
import { scanBody } from './body-scan.js';
import { isBatchEnvelope } from './batch.js';
import { validateBatch, validateNodeMessage, validatePlaneMessage } from './validator.js';

/** The smallest size of any message type (message-limits.ts): a body this small is decoded without a walk. */
export const SCAN_MIN_BYTES = Math.min(...Object.values(BODY_LIMITS).map((l) => l.bytes ?? Number.POSITIVE_INFINITY));

/** A node's frame body, read by the control plane; `turnedOff`: types this session does not take (validator.ts). */
export function readNodeMessage(codec: Codec, body: Uint8Array, turnedOff?: (type: string) => boolean): NodeMessage {
  return read(codec, body, (value) => validateNodeMessage(value, turnedOff));
}

/**
 * A node's frame body on a session that turned `batch` on: a message, or a `Batch` whose
 * envelopes are read one by one (protocol/batch.ts). Without `batch`, a Batch is `unknown_type`.
 */
export function readNodeFrame(codec: Codec, body: Uint8Array, batches: boolean, turnedOff?: (type: string) => boolean): NodeMessage | BatchMessage {
  if (!batches) return readNodeMessage(codec, body, turnedOff);
  return read<NodeMessage | BatchMessage>(codec, body, (value) => (isBatchEnvelope(value) ? validateBatch(value) : validateNodeMessage(value, turnedOff)), true);
}

/** The control plane's frame body, read by a node. */
export function readPlaneMessage(codec: Codec, body: Uint8Array): PlaneMessage {
  return read(codec, body, validatePlaneMessage);
}

function read<M extends { type: string; id?: string }>(codec: Codec, body: Uint8Array, validate: (value: unknown) => M, batches = false): M {
  const sizeChecked = body.length > SCAN_MIN_BYTES ? scanBody(codec, body, batches).type !== undefined : true;
  const message = validate(decodeBody(codec, body));
  if (!sizeChecked) checkSize(message.type, body.length, message.id);
  return message;
}

function checkSize(type: string, bytes: number, id: string | undefined): void {
  const max = bodyLimitOf(type).bytes;
  if (max !== undefined && bytes > max) {
    throw new MusterError('invalid_message', `a ${type} body of ${bytes} bytes is over the ${max} bytes a ${type} may have`, {
      field: 'data',
      replyTo: id,
    });
  }
}
