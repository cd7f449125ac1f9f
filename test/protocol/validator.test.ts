// Envelope and message validation (PROTOCOL.md section 2): unknown fields are ignored,
// a bad field is `invalid_message` naming its path, a type this side does not take is
// `unknown_type`, and every error echoes the message `id` as `reply_to`.
import { describe, it, expect } from 'vitest';
import { MusterError } from '../../protocol/errors.js';
import { NODE_MESSAGE_TYPES, MESSAGE_SCHEMAS, type MessageType } from '../../protocol/messages.js';
import { validateNodeMessage, validatePlaneMessage } from '../../protocol/validator.js';
import { isNodeMessageType, sampleMessages } from './sample-messages.js';

type Json = Record<string, unknown>;

/** A sample as a loose JSON tree, the shape a decoder hands over, so a test can break it. */
function loose(type: MessageType): Json {
  return structuredClone(sampleMessages()[type]) as unknown as Json;
}

function at(root: Json, path: string): Json {
  return path.split('.').reduce<Json>((node, key) => node[key] as Json, root);
}

function rejection(fn: () => unknown): MusterError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    return err as MusterError;
  }
  return expect.fail('expected a MusterError');
}

const PLANE_TYPES = (Object.keys(MESSAGE_SCHEMAS) as MessageType[]).filter((t) => !isNodeMessageType(t));

describe('validateNodeMessage / validatePlaneMessage', () => {
  it('ignores unknown fields in the envelope and at every depth of data', () => {
    const msg = loose('RegisterNode');
    msg.x_future = { nested: [1, 2] };
    at(msg, 'data').added_in_v2 = true;
    at(msg, 'data.capabilities.max_resources').gpu_count = 2;
    at(msg, 'data.node_info').kernel = '6.1';
    const validated = validateNodeMessage(msg);
    expect(validated.type).toBe('RegisterNode');
    expect(validated).toBe(msg);

    const ack = loose('RegisterAck');
    at(ack, 'data').cluster = { replicas: 3 };
    expect(validatePlaneMessage(ack).type).toBe('RegisterAck');
  });

  it('accepts a message without optional fields', () => {
    const msg = loose('RegisterNode');
    delete at(msg, 'data').resume;
    delete msg.id;
    delete msg.traceparent;
    expect(validateNodeMessage(msg).type).toBe('RegisterNode');
    expect(validatePlaneMessage({ type: 'Drain', data: {} }).type).toBe('Drain');
  });

  it('names the path of a missing nested field', () => {
    const msg = loose('RegisterNode');
    delete at(msg, 'data.capabilities.max_resources').cpu_cores;
    const err = rejection(() => validateNodeMessage(msg));
    expect(err.code).toBe('invalid_message');
    expect(err.fatal).toBe(false);
    expect(err.field).toBe('data.capabilities.max_resources.cpu_cores');
    expect(err.replyTo).toBe('m-1');
    expect(err.toData()).toMatchObject({ code: 'invalid_message', fatal: false, field: err.field });
  });

  it('names the path of an ill-typed nested field', () => {
    const cases: [MessageType, string, unknown][] = [
      ['RegisterNode', 'data.capabilities.max_resources.cpu_cores', 'eight'],
      ['RegisterNode', 'data.node_info.tags.region', 7],
      ['RegisterNode', 'data.resume.node_id', 'not-a-uuid'],
      ['Heartbeat', 'data.status', 'Sleeping'],
      ['Heartbeat', 'data.metrics.active_jobs', -1],
      ['Heartbeat', 'data.timestamp', 'yesterday'],
      ['LogChunk', 'data.seq', 1.5],
      ['LogChunk', 'data.stream', 'stdin'],
      ['JobResult', 'data.result.exit_code', '0'],
      ['JobAccepted', 'data.attempt', 0],
    ];
    for (const [type, path, bad] of cases) {
      const msg = loose(type);
      const keys = path.split('.');
      at(msg, keys.slice(0, -1).join('.'))[keys.at(-1)!] = bad;
      const err = rejection(() => validateNodeMessage(msg));
      expect({ type, code: err.code, field: err.field }).toEqual({ type, code: 'invalid_message', field: path });
    }
  });

  it('names array elements by index', () => {
    const msg = loose('JobAssignment');
    at(msg, 'data.job').command = ['npm', 3];
    expect(rejection(() => validatePlaneMessage(msg)).field).toBe('data.job.command.1');
  });

  it('rejects a missing or non-map data', () => {
    for (const data of [undefined, null, [], 'x', 3]) {
      const msg = loose('Heartbeat');
      msg.data = data;
      const err = rejection(() => validateNodeMessage(msg));
      expect({ code: err.code, field: err.field, replyTo: err.replyTo }).toEqual({
        code: 'invalid_message',
        field: 'data',
        replyTo: 'm-42',
      });
    }
  });

  it('checks the envelope fields', () => {
    const cases: [string, unknown][] = [
      ['type', 5],
      ['type', undefined],
      ['reply_to', 5],
      ['traceparent', {}],
    ];
    for (const [field, value] of cases) {
      const msg = loose('Heartbeat');
      msg[field] = value;
      const err = rejection(() => validateNodeMessage(msg));
      expect({ code: err.code, field: err.field, replyTo: err.replyTo }).toEqual({
        code: 'invalid_message',
        field,
        replyTo: 'm-42',
      });
    }
    for (const id of ['', 'x'.repeat(65), 42]) {
      const msg = loose('Heartbeat');
      msg.id = id;
      const err = rejection(() => validateNodeMessage(msg));
      expect({ code: err.code, field: err.field, replyTo: err.replyTo }).toEqual({
        code: 'invalid_message',
        field: 'id',
        replyTo: undefined,
      });
    }
    const longest = loose('Heartbeat');
    longest.id = 'x'.repeat(64);
    expect(validateNodeMessage(longest).id).toBe('x'.repeat(64));
  });

  it('answers an unknown type with a non-fatal unknown_type that echoes the id', () => {
    const err = rejection(() => validateNodeMessage({ type: 'Teleport', id: 'q-9', data: {} }));
    expect(err.code).toBe('unknown_type');
    expect(err.fatal).toBe(false);
    expect(err.replyTo).toBe('q-9');
    for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(rejection(() => validateNodeMessage({ type, data: {} })).code).toBe('unknown_type');
    }
  });

  it('treats a plane-to-node type sent to the control plane as unknown_type, and the reverse', () => {
    for (const type of PLANE_TYPES) {
      const err = rejection(() => validateNodeMessage(loose(type)));
      expect({ type, code: err.code }).toEqual({ type, code: 'unknown_type' });
    }
    for (const type of NODE_MESSAGE_TYPES) {
      const msg = loose(type);
      msg.id = 'n-1';
      const err = rejection(() => validatePlaneMessage(msg));
      expect({ type, code: err.code, replyTo: err.replyTo }).toEqual({ type, code: 'unknown_type', replyTo: 'n-1' });
    }
  });

  it('echoes the id as replyTo on invalid_message', () => {
    const msg = loose('LogChunk');
    msg.id = 'log-77';
    at(msg, 'data').data = 12;
    const err = rejection(() => validateNodeMessage(msg));
    expect(err.replyTo).toBe('log-77');
    expect(err.field).toBe('data.data');
  });

  it('rejects an envelope that is not a plain map with malformed_frame', () => {
    for (const value of [null, [], 'RegisterNode', 1, new Date(0), new Uint8Array(4)]) {
      const err = rejection(() => validateNodeMessage(value));
      expect(err.code).toBe('malformed_frame');
      expect(err.fatal).toBe(true);
    }
  });
});
