// Turns a decoded body into a typed message (PROTOCOL.md section 2), or a MusterError:
// `malformed_frame` when the body is not a map, `unknown_type` for a type this side does
// not take, `invalid_message` with the offending `field` path otherwise.
// Validators are compiled once from the schemas in messages.ts.
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import { MusterError } from './errors.js';
import {
  MESSAGE_SCHEMAS,
  NODE_MESSAGE_TYPES,
  type BatchMessage,
  type MessageType,
  type NodeMessage,
  type PlaneMessage,
} from './messages.js';

/** PROTOCOL.md section 2: an `id` (and so a `reply_to`) is 1 to 64 characters. */
const MAX_ID_CHARS = 64;
/** W3C trace context: a version 00 `traceparent` is 55 characters; later versions may add some. */
const MAX_TRACEPARENT_CHARS = 128;

const checks = new Map<string, TypeCheck<TSchema>>();
for (const [type, schema] of Object.entries(MESSAGE_SCHEMAS)) checks.set(type, TypeCompiler.Compile(schema));

const nodeTypes: ReadonlySet<string> = new Set(NODE_MESSAGE_TYPES);
const planeTypes: ReadonlySet<string> = new Set(
  (Object.keys(MESSAGE_SCHEMAS) as MessageType[]).filter((t) => !nodeTypes.has(t) && t !== 'Batch'),
);
const batchType: ReadonlySet<string> = new Set(['Batch']);

/**
 * Validates a message sent by a node to the control plane. `turnedOff` names types this session
 * does not take (those of a wire feature it did not turn on): they are `unknown_type`, before
 * their fields are looked at.
 */
export function validateNodeMessage(value: unknown, turnedOff?: (type: string) => boolean): NodeMessage {
  return validateEnvelope(value, nodeTypes, turnedOff) as NodeMessage;
}

/** Validates a message sent by the control plane to a node. */
export function validatePlaneMessage(value: unknown): PlaneMessage {
  return validateEnvelope(value, planeTypes) as PlaneMessage;
}

/** Validates a `Batch` envelope (its own fields; its messages are read one by one, protocol/batch.ts). */
export function validateBatch(value: unknown): BatchMessage {
  return validateEnvelope(value, batchType) as BatchMessage;
}

function validateEnvelope(value: unknown, accepted: ReadonlySet<string>, turnedOff?: (type: string) => boolean): unknown {
  if (!isPlainMap(value)) throw new MusterError('malformed_frame', 'envelope is not a map');
  const { type, data, id, reply_to: replyTo, traceparent } = value;
  let replyId: string | undefined;
  if (id !== undefined) {
    if (typeof id !== 'string' || id.length < 1 || id.length > MAX_ID_CHARS) {
      throw new MusterError('invalid_message', `id must be a string of 1 to ${MAX_ID_CHARS} characters`, { field: 'id' });
    }
    replyId = id;
  }
  if (typeof type !== 'string') {
    throw new MusterError('invalid_message', 'type must be a string', { field: 'type', replyTo: replyId });
  }
  if (replyTo !== undefined && (typeof replyTo !== 'string' || replyTo.length > MAX_ID_CHARS)) {
    throw new MusterError('invalid_message', `reply_to must be a string of at most ${MAX_ID_CHARS} characters`, {
      field: 'reply_to',
      replyTo: replyId,
    });
  }
  if (traceparent !== undefined && (typeof traceparent !== 'string' || traceparent.length > MAX_TRACEPARENT_CHARS)) {
    throw new MusterError('invalid_message', `traceparent must be a string of at most ${MAX_TRACEPARENT_CHARS} characters`, {
      field: 'traceparent',
      replyTo: replyId,
    });
  }
  const check = accepted.has(type) && turnedOff?.(type) !== true ? checks.get(type) : undefined;
  if (check === undefined) {
    throw new MusterError('unknown_type', `unknown message type ${JSON.stringify(type.slice(0, 64))}`, {
      replyTo: replyId,
    });
  }
  if (!isPlainMap(data)) {
    throw new MusterError('invalid_message', 'data must be a map', { field: 'data', replyTo: replyId });
  }
  if (!check.Check(data)) {
    const first = check.Errors(data).First();
    const field = fieldOf(first?.path ?? '');
    throw new MusterError('invalid_message', `${field}: ${first?.message ?? 'invalid'}`, {
      field,
      replyTo: replyId,
    });
  }
  return value;
}

/** A field path is echoed to the sender and logged: a key as long as a frame is cut short. */
const MAX_FIELD_CHARS = 256;

function fieldOf(path: string): string {
  const field = path === '' ? 'data' : `data${path.replaceAll('/', '.')}`;
  return field.length > MAX_FIELD_CHARS ? `${field.slice(0, MAX_FIELD_CHARS)}…` : field;
}

// Only plain objects are maps: MessagePack extensions can decode to a Date, Set, Error,
// RegExp or typed array, none of which is an envelope or a `data` map.
export function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
