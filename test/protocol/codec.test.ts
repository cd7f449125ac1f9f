// Both body codecs carry every message type unchanged, and anything that does not
// decode to an envelope map is `malformed_frame` (PROTOCOL.md sections 1, 2 and 4).
import { describe, it, expect } from 'vitest';
import { Packr } from 'msgpackr';
import {
  CODEC_JSON,
  CODEC_MSGPACK,
  codecByName,
  decodeBody,
  encodeBody,
  isKnownCodecByte,
  type Codec,
} from '../../protocol/codec.js';
import { MusterError } from '../../protocol/errors.js';
import { MESSAGE_SCHEMAS, type MessageType } from '../../protocol/messages.js';
import { validateNodeMessage, validatePlaneMessage } from '../../protocol/validator.js';
import { sampleMessages, validatorOf } from './sample-messages.js';

const CODECS: [string, Codec][] = [
  ['json', CODEC_JSON],
  ['msgpack', CODEC_MSGPACK],
];

function expectMalformed(fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(MusterError);
  expect((thrown as MusterError).code).toBe('malformed_frame');
  expect((thrown as MusterError).fatal).toBe(true);
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
// A foreign writer with msgpackr's extensions on, as a careless or hostile peer might use.
const richPackr = new Packr({ moreTypes: true, structuredClone: true });

describe('codecs', () => {
  it('has a sample for every message type', () => {
    expect(Object.keys(sampleMessages()).sort()).toEqual(Object.keys(MESSAGE_SCHEMAS).sort());
  });

  for (const [name, codec] of CODECS) {
    describe(name, () => {
      for (const type of Object.keys(MESSAGE_SCHEMAS) as MessageType[]) {
        it(`round-trips ${type} through encodeBody, decodeBody and validation`, () => {
          const original = sampleMessages()[type];
          const decoded = decodeBody(codec, encodeBody(codec, original));
          const validated = validatorOf(type)(decoded);
          expect(validated).toStrictEqual(original);
        });
      }

      it('turns garbage into malformed_frame', () => {
        const garbage = [Uint8Array.of(), Uint8Array.of(0xc1, 0xff, 0x00), Uint8Array.of(0x92, 0x01), utf8('{"type":')];
        for (const bytes of garbage) expectMalformed(() => decodeBody(codec, bytes));
      });

      it('turns a body that is not a map into malformed_frame', () => {
        for (const value of [[1, 2, 3], 'Heartbeat', 42, null, true]) {
          expectMalformed(() => validateNodeMessage(decodeBody(codec, encodeBody(codec, value))));
          expectMalformed(() => validatePlaneMessage(decodeBody(codec, encodeBody(codec, value))));
        }
      });
    });
  }

  it('rejects invalid UTF-8 in a JSON body', () => {
    // A lone continuation byte, an overlong encoding and a UTF-16 surrogate: none is UTF-8.
    for (const bad of [[0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      const body = Uint8Array.of(...utf8('{"type":"Heartbeat","data":{"x":"'), ...bad, ...utf8('"}}'));
      expectMalformed(() => decodeBody(CODEC_JSON, body));
    }
  });

  it('rejects a MessagePack body with trailing bytes', () => {
    const body = encodeBody(CODEC_MSGPACK, sampleMessages().Heartbeat);
    expectMalformed(() => decodeBody(CODEC_MSGPACK, Uint8Array.of(...body, 0x00)));
  });

  it('rejects MessagePack extension values that are not maps as the envelope', () => {
    for (const value of [new Date(0), new Set([1]), /a+/, new Float32Array(2), new Error('x')]) {
      expectMalformed(() => validateNodeMessage(decodeBody(CODEC_MSGPACK, richPackr.pack(value))));
    }
  });

  it('writes MessagePack that plain readers understand: maps, not msgpackr records', () => {
    const body = encodeBody(CODEC_MSGPACK, { type: 'Configure', data: { heartbeat_interval_ms: 1000 } });
    const first = body[0]!;
    // fixmap, map16 or map32: standard maps, not msgpackr's record extension.
    expect((first & 0xf0) === 0x80 || first === 0xde || first === 0xdf).toBe(true);
    expect(Buffer.from(body).includes(Buffer.from('heartbeat_interval_ms'))).toBe(true);
    const plainReader = new Packr({ useRecords: false });
    expect(plainReader.unpack(body)).toEqual({ type: 'Configure', data: { heartbeat_interval_ms: 1000 } });
  });

  it('names codecs and knows which codec bytes it can read', () => {
    expect(codecByName('json')).toBe(0x01);
    expect(codecByName('msgpack')).toBe(0x02);
    const known = [...Array(256).keys()].filter(isKnownCodecByte);
    expect(known).toEqual([0x01, 0x02, 0x81, 0x82]);
  });
});
