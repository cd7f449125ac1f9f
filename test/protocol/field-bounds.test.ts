// Every field has a bound (issue 8 item 8): a walk over the schemas finds no string, array or
// map without one, and the trial's oversize inputs (900 KB tag values, 100,000 runner types,
// 500 KB addresses, more extra fields than a newer peer would add) are `invalid_message` with
// the path of the field, while the longest value a bound allows passes.
import type { TSchema } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { MusterError } from '../../protocol/errors.js';
import {
  ADDRESS_MAX,
  HOSTNAME_MAX,
  LIST_MAX,
  MESSAGE_SCHEMAS,
  SPARE_FIELDS,
  TAG_VALUE_MAX,
  TAGS_MAX,
  type MessageType,
} from '../../protocol/messages.js';
import { validateNodeMessage, validatePlaneMessage } from '../../protocol/validator.js';
import { isNodeMessageType, sampleMessages } from './sample-messages.js';

type Json = Record<string, unknown>;

function loose(type: MessageType): Json {
  return structuredClone(sampleMessages()[type]) as unknown as Json;
}

function at(root: Json, path: string): Json {
  return path.split('.').reduce<Json>((node, key) => node[key] as Json, root);
}

function validate(msg: Json): unknown {
  return isNodeMessageType(msg.type as MessageType) ? validateNodeMessage(msg) : validatePlaneMessage(msg);
}

function fieldRefused(msg: Json): string | undefined {
  try {
    validate(msg);
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    expect((err as MusterError).code).toBe('invalid_message');
    return (err as MusterError).field;
  }
  return expect.fail('expected invalid_message');
}

/** Paths of every string, array and map in `schema` that has no bound. */
function unbounded(schema: TSchema, path: string, out: string[]): string[] {
  const s = schema as TSchema & Record<string, unknown>;
  if (Array.isArray(s.anyOf)) for (const [i, option] of (s.anyOf as TSchema[]).entries()) unbounded(option, `${path}|${i}`, out);
  if (s.type === 'string' && s.const === undefined && typeof s.maxLength !== 'number' && !fixedLength(s.pattern)) out.push(path);
  if (s.type === 'array') {
    if (typeof s.maxItems !== 'number') out.push(path);
    unbounded(s.items as TSchema, `${path}[]`, out);
  }
  if (s.type === 'object') {
    if (typeof s.maxProperties !== 'number') out.push(path);
    for (const [key, child] of Object.entries((s.properties ?? {}) as Record<string, TSchema>)) unbounded(child, `${path}.${key}`, out);
    for (const [key, child] of Object.entries((s.patternProperties ?? {}) as Record<string, TSchema>)) {
      if (!fixedLength(key)) out.push(`${path}{key}`);
      unbounded(child, `${path}{}`, out);
    }
  }
  return out;
}

/** An anchored pattern without an unbounded repeat (`*`, `+`, `{n,}`): it bounds the length. */
function fixedLength(pattern: unknown): boolean {
  if (typeof pattern !== 'string' || !pattern.startsWith('^') || !pattern.endsWith('$')) return false;
  return !/[*+]|\{\d+,\}/.test(pattern.replace(/\\./g, ''));
}

describe('field bounds', () => {
  it('leaves no string, array or map of any message without a bound', () => {
    const found: string[] = [];
    for (const [type, schema] of Object.entries(MESSAGE_SCHEMAS)) unbounded(schema, type, found);
    expect(found).toEqual([]);
  });

  it('refuses the trial’s oversize fields, naming each', () => {
    const cases: [MessageType, string, unknown, string][] = [
      ['RegisterNode', 'data.node_info.tags', { region: 'x'.repeat(900_000) }, 'data.node_info.tags.region'],
      ['RegisterNode', 'data.capabilities.runner_types', Array.from({ length: 100_000 }, (_, i) => `r${i}`), 'data.capabilities.runner_types'],
      ['RegisterNode', 'data.node_info.ip_address', '1'.repeat(500_000), 'data.node_info.ip_address'],
      ['RegisterNode', 'data.node_info.hostname', 'h'.repeat(HOSTNAME_MAX + 1), 'data.node_info.hostname'],
      ['RegisterNode', 'data.node_info.tags', Object.fromEntries(Array.from({ length: TAGS_MAX + 1 }, (_, i) => [`t${i}`, 'v'])), 'data.node_info.tags'],
      ['RegisterNode', 'data.node_info.tags', { ['k'.repeat(129)]: 'v' }, `data.node_info.tags.${'k'.repeat(129)}`],
      ['RegisterNode', 'data.capabilities.features', Array.from({ length: LIST_MAX + 1 }, () => 'f'), 'data.capabilities.features'],
      ['RegisterNode', 'data.auth_token', 't'.repeat(8193), 'data.auth_token'],
      ['JobRejected', 'data.reason', 'r'.repeat(1025), 'data.reason'],
      ['JobAssignment', 'data.job.environment', { A: 'x'.repeat(131_073) }, 'data.job.environment.A'],
      ['JobAssignment', 'data.job.command', Array.from({ length: 4097 }, () => 'a'), 'data.job.command'],
      ['JobAssignment', 'data.job.environment', { 'A=B': 'x' }, 'data.job.environment.A=B'],
      ['Heartbeat', 'data.timestamp', `2025-03-14T09:26:53.${'5'.repeat(100)}Z`, 'data.timestamp'],
      ['Configure', 'data.heartbeat_interval_ms', 2 ** 31, 'data.heartbeat_interval_ms'],
    ];
    for (const [type, path, value, field] of cases) {
      const msg = loose(type);
      const keys = path.split('.');
      at(msg, keys.slice(0, -1).join('.'))[keys.at(-1)!] = value;
      expect({ type, field: fieldRefused(msg) }).toEqual({ type, field });
    }
  });

  it(`takes ${SPARE_FIELDS} unknown fields in an object, and refuses more`, () => {
    const msg = loose('Heartbeat');
    const data = at(msg, 'data');
    const defined = Object.keys(data).length;
    for (let i = 0; i < SPARE_FIELDS; i++) data[`future_${i}`] = i;
    expect(() => validateNodeMessage(msg)).not.toThrow();
    data.one_too_many = true;
    expect(defined + SPARE_FIELDS + 1).toBe(Object.keys(data).length);
    expect(fieldRefused(msg)).toBe('data');
  });

  it('takes the longest values the bounds allow', () => {
    const msg = loose('RegisterNode');
    Object.assign(at(msg, 'data.node_info'), {
      hostname: 'h'.repeat(HOSTNAME_MAX),
      ip_address: 'a'.repeat(ADDRESS_MAX),
      tags: Object.fromEntries(Array.from({ length: TAGS_MAX }, (_, i) => [`${i}`.padEnd(128, 'k'), 'v'.repeat(TAG_VALUE_MAX)])),
    });
    at(msg, 'data.capabilities').runner_types = Array.from({ length: LIST_MAX }, (_, i) => `${i}`.padEnd(128, 'r'));
    expect(validateNodeMessage(msg).type).toBe('RegisterNode');
  });

  it('bounds the envelope: reply_to as an id, traceparent to 128 characters, a long bad key cut short in field', () => {
    const reply = loose('Heartbeat');
    reply.reply_to = 'r'.repeat(65);
    expect(fieldRefused(reply)).toBe('reply_to');
    const trace = loose('Heartbeat');
    trace.traceparent = 't'.repeat(129);
    expect(fieldRefused(trace)).toBe('traceparent');
    const msg = loose('RegisterNode');
    at(msg, 'data.node_info').tags = { ['k'.repeat(100_000)]: 'v' };
    expect(fieldRefused(msg)!.length).toBeLessThanOrEqual(257);
  });
});
