// The protocol's messages as published JSON Schemas (docs/schemas/, written by `npm run schemas`):
// one file per message type, each the whole envelope of PROTOCOL section 2 with that type's
// `data` schema from messages.ts. The TypeBox schemas are JSON Schema already; this only
// copies them out (TypeBox's own symbol keys do not survive JSON) and names them.
import type { TSchema } from '@sinclair/typebox';
import { MESSAGE_SCHEMAS, NODE_MESSAGE_TYPES, type MessageType } from './messages.js';

export const SCHEMA_DIALECT = 'http://json-schema.org/draft-07/schema#';
/** The protocol version these schemas describe. */
export const SCHEMA_PROTOCOL_VERSION = 1;

const nodeTypes: ReadonlySet<string> = new Set(NODE_MESSAGE_TYPES);
/** Types either side sends: a `Batch` (v2) carries the other messages. */
const eitherTypes: ReadonlySet<string> = new Set(['Batch']);

/** The envelope fields other than `type` and `data` (section 2). */
const ENVELOPE_FIELDS = {
  id: { type: 'string', minLength: 1, maxLength: 64, description: 'sender-chosen; replies and errors carry it back as reply_to' },
  reply_to: { type: 'string', description: 'the id of the message this one answers' },
  traceparent: { type: 'string', description: 'W3C trace context' },
};

/** File name (in docs/schemas/) → schema, in a stable order. */
export function messageJsonSchemas(): Map<string, Record<string, unknown>> {
  const files = new Map<string, Record<string, unknown>>();
  const types = Object.keys(MESSAGE_SCHEMAS) as MessageType[];
  for (const type of types) files.set(`${type}.json`, messageSchema(type, MESSAGE_SCHEMAS[type]));
  files.set('envelope.json', envelopeSchema(types));
  files.set('index.json', {
    protocol_version: SCHEMA_PROTOCOL_VERSION,
    node_to_plane: types.filter((t) => nodeTypes.has(t)).map((t) => `${t}.json`),
    plane_to_node: types.filter((t) => !nodeTypes.has(t) && !eitherTypes.has(t)).map((t) => `${t}.json`),
    either_direction: types.filter((t) => eitherTypes.has(t)).map((t) => `${t}.json`),
  });
  return files;
}

/** The text each file holds: stable, so that a regeneration without changes is no diff. */
export function schemaFileText(schema: Record<string, unknown>): string {
  return `${JSON.stringify(schema, null, 2)}\n`;
}

function messageSchema(type: MessageType, data: TSchema): Record<string, unknown> {
  const direction = eitherTypes.has(type) ? 'either direction' : nodeTypes.has(type) ? 'node to control plane' : 'control plane to node';
  return {
    $schema: SCHEMA_DIALECT,
    $id: schemaId(type),
    title: type,
    description: `Muster protocol v${SCHEMA_PROTOCOL_VERSION}, ${direction}: the ${type} envelope. Unknown fields are ignored.`,
    type: 'object',
    required: ['type', 'data'],
    properties: {
      type: { const: type },
      data: plain(data),
      ...ENVELOPE_FIELDS,
    },
  };
}

/** Any message: `type` names one of the per-message schemas. */
function envelopeSchema(types: MessageType[]): Record<string, unknown> {
  return {
    $schema: SCHEMA_DIALECT,
    $id: schemaId('envelope'),
    title: 'Envelope',
    description: `Muster protocol v${SCHEMA_PROTOCOL_VERSION}: every frame body decodes to this map; data is checked by the schema of its type.`,
    type: 'object',
    required: ['type', 'data'],
    properties: {
      type: { type: 'string', enum: types },
      data: { type: 'object' },
      ...ENVELOPE_FIELDS,
    },
  };
}

function schemaId(name: string): string {
  return `urn:muster:protocol:v${SCHEMA_PROTOCOL_VERSION}:${name}`;
}

/**
 * The schema as plain JSON: TypeBox marks its schemas with symbol keys, which JSON drops. Its
 * `Uint8Array` (an artifact chunk's bytes, MessagePack `bin`) has no JSON Schema form, and never
 * occurs in JSON, where those bytes are base64 text: it becomes a branch no JSON value takes.
 */
function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema), (_key, value: unknown) => {
    if (typeof value !== 'object' || value === null || (value as { type?: unknown }).type !== 'Uint8Array') return value;
    const max = (value as { maxByteLength?: number }).maxByteLength;
    return { description: `MessagePack bin${max === undefined ? '' : ` of at most ${max} bytes`}; in JSON the bytes are base64 text`, not: {} };
  }) as unknown;
}
