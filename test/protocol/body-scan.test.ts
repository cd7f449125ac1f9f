// Refusing abusive bodies before decoding them (issue 8 item 8): a body over its type's size or
// item budget is `invalid_message` (field `data`, answering the envelope's `id`) whether or not
// it would decode, so the decoder never ran on it; a body that is not a map is `malformed_frame`;
// valid messages of every type pass in both codecs, and text full of brackets, commas and escaped
// quotes is not mistaken for structure.
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody, type Codec } from '../../protocol/codec.js';
import { MusterError } from '../../protocol/errors.js';
import { scanBody } from '../../protocol/body-scan.js';
import { BODY_LIMITS, MAX_DEPTH } from '../../protocol/message-limits.js';
import { readNodeFrame, readNodeMessage, readPlaneMessage } from '../../protocol/message-reader.js';
import { isNodeMessageType, sampleMessages, SAMPLE_JOB_ID, SAMPLE_NODE_ID } from './sample-messages.js';

const CODECS: [string, Codec][] = [
  ['JSON', CODEC_JSON],
  ['MessagePack', CODEC_MSGPACK],
];

// The plane's own encoder writes maps of at most 65,535 entries; an attacker's need not.
const anyPackr = new Packr({ useRecords: false, variableMapSize: true });

/** `value` as any sender might encode it. */
function encode(codec: Codec, value: unknown): Uint8Array {
  return codec === CODEC_JSON ? encodeBody(codec, value) : anyPackr.pack(value);
}

function refusal(fn: () => unknown): MusterError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    return err as MusterError;
  }
  return expect.fail('expected a MusterError');
}

/** The heartbeat of the trial: a valid one with `extra` more keys in `data` (110,000: about 1.5 MB of JSON). */
function abusiveHeartbeat(extra: number): Record<string, unknown> {
  const hb = sampleMessages().Heartbeat as unknown as { data: Record<string, unknown> };
  for (let i = 0; i < extra; i++) hb.data[`k${i}`] = i;
  return hb;
}

describe.each(CODECS)('scanBody (%s)', (_name, codec) => {
  it('passes a sample of every type and reads its type and id', () => {
    for (const message of Object.values(sampleMessages())) {
      const shape = scanBody(codec, encodeBody(codec, message));
      expect(shape).toEqual({ type: message.type, id: message.id });
      const read = message.type === 'Batch' ? (c: Codec, b: Uint8Array) => readNodeFrame(c, b, true) : isNodeMessageType(message.type) ? readNodeMessage : readPlaneMessage;
      expect(read(codec, encodeBody(codec, message))).toEqual(message);
    }
  });

  it('refuses a Heartbeat with 110,000 extra keys for its size, answering its id', () => {
    const err = refusal(() => scanBody(codec, encode(codec, abusiveHeartbeat(110_000))));
    expect(err).toMatchObject({ code: 'invalid_message', field: 'data', replyTo: 'm-42', fatal: false });
    expect(err.message).toContain(`over the ${BODY_LIMITS.Heartbeat.bytes} bytes a Heartbeat may have`);
  });

  it('refuses it before decoding: the same body cut short (which no decoder takes) gets the same answer', () => {
    const body = encode(codec, abusiveHeartbeat(110_000));
    const cut = body.subarray(0, body.length - 7);
    expect(() => readNodeMessage(codec, cut)).toThrow(/over the 4096 bytes a Heartbeat may have/);
    expect(refusal(() => readNodeMessage(codec, cut)).code).toBe('invalid_message');
  });

  it('refuses a LogChunk (no size of its own) with more items than it may hold', () => {
    const chunk = sampleMessages().LogChunk as unknown as { data: Record<string, unknown> };
    for (let i = 0; i < 1_000; i++) chunk.data[`k${i}`] = [i];
    const err = refusal(() => scanBody(codec, encode(codec, chunk)));
    expect(err).toMatchObject({ code: 'invalid_message', field: 'data' });
    expect(err.message).toContain(`${BODY_LIMITS.LogChunk.items} items`);
  });

  it('counts items before it knows the type: a type after 100,000 entries does not get them decoded', () => {
    const data: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) data[`k${i}`] = i;
    const err = refusal(() => scanBody(codec, encode(codec, { data, type: 'Heartbeat', id: 'late' })));
    expect(err).toMatchObject({ code: 'invalid_message', field: 'data' });
    expect(err.message).toContain('8192 items');
  });

  it(`refuses nesting deeper than ${MAX_DEPTH}`, () => {
    let deep: unknown = 1;
    for (let i = 0; i < MAX_DEPTH + 1; i++) deep = [deep];
    const err = refusal(() => scanBody(codec, encodeBody(codec, { type: 'LogChunk', data: deep })));
    expect(err).toMatchObject({ code: 'invalid_message', field: 'data' });
  });

  it('answers malformed_frame for a body that is not a map, as the validator would', () => {
    for (const value of [[1, 2], 'Heartbeat', 7, null]) {
      expect(refusal(() => scanBody(codec, encodeBody(codec, value))).code).toBe('malformed_frame');
    }
  });

  it('does not count brackets, commas and escaped quotes inside text as structure', () => {
    const text = '{"a": [1, 2], "b": "\\"}\\\\", '.repeat(2_000);
    const chunk = { type: 'LogChunk', id: 'c-1', data: { job_id: SAMPLE_JOB_ID, attempt: 1, stream: 'stdout', seq: 0, data: text } };
    expect(scanBody(codec, encode(codec, chunk))).toEqual({ type: 'LogChunk', id: 'c-1' });
    expect(readNodeMessage(codec, encodeBody(codec, chunk)).data).toMatchObject({ data: text });
  });
});

describe('scanBody, codec-specific cases', () => {
  it('refuses a MessagePack map announcing 4,294,967,295 entries without walking them', () => {
    const head = anyPackr.pack({ type: 'LogChunk', id: 'x' });
    // The root fixmap of 2 becomes one of 3 whose third key is a map32 of 2^32 - 1 entries.
    const body = new Uint8Array([0x83, ...head.subarray(1), 0xa1, 0x64, 0xdf, 0xff, 0xff, 0xff, 0xff]);
    expect(refusal(() => scanBody(CODEC_MSGPACK, body))).toMatchObject({ code: 'invalid_message', field: 'data', replyTo: 'x' });
  });

  it('holds a JSON body whose type key is escaped to its type’s size once it is decoded', () => {
    const hb = abusiveHeartbeat(500);
    const text = JSON.stringify(hb).replace('"type"', '"\\u0074ype"');
    const body = new TextEncoder().encode(text);
    expect(scanBody(CODEC_JSON, body).type).toBeUndefined();
    expect(refusal(() => readNodeMessage(CODEC_JSON, body))).toMatchObject({ code: 'invalid_message', field: 'data', replyTo: 'm-42' });
  });

  it('leaves truncated and ill-formed bodies to the decoder (malformed_frame)', () => {
    const hb = encodeBody(CODEC_JSON, sampleMessages().Heartbeat);
    expect(refusal(() => readNodeMessage(CODEC_JSON, hb.subarray(0, 40))).code).toBe('malformed_frame');
    const packed = encodeBody(CODEC_MSGPACK, { ...sampleMessages().Heartbeat, data: { node_id: SAMPLE_NODE_ID } });
    expect(refusal(() => readNodeMessage(CODEC_MSGPACK, packed.subarray(0, packed.length - 3))).code).toBe('malformed_frame');
  });
});
