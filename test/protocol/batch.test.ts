// The `batch` wire feature's protocol pieces: a Batch body joined from encoded envelopes reads
// back as the Batch of them in both codecs (MessagePack's array header at 15/16 and at 256);
// a Batch's envelopes are read lazily, one error each, a nested Batch refusing the whole; and
// the coalescer holds a burst to the end of the turn, sends one message alone, splits at
// BATCH_MAX and at the frame size, and keeps the order of sending.
import { describe, expect, it } from 'vitest';
import { batchBody, readBatch, readBatchedNodeMessage } from '../../protocol/batch.js';
import { BATCH_TARGET_BYTES, BatchCoalescer } from '../../protocol/batch-coalescer.js';
import { CODEC_JSON, CODEC_MSGPACK, decodeBody, encodeBody, type Codec } from '../../protocol/codec.js';
import { BATCH_MAX } from '../../protocol/messages.js';
import { validateBatch } from '../../protocol/validator.js';
import { sampleMessages } from './sample-messages.js';

const CODECS: [string, Codec][] = [
  ['JSON', CODEC_JSON],
  ['MessagePack', CODEC_MSGPACK],
];

function envelopes(n: number): Array<Record<string, unknown>> {
  return Array.from({ length: n }, (_, i) => ({ type: 'Telemetry', id: `t-${i}`, data: { n: i, text: 'ünï ✓' } }));
}

describe.each(CODECS)('batchBody (%s)', (_name, codec) => {
  it.each([1, 2, 15, 16, BATCH_MAX])('joins %i encoded envelopes into the Batch of them', (n) => {
    const messages = envelopes(n);
    const body = batchBody(codec, messages.map((m) => encodeBody(codec, m)), 'b-1');
    expect(validateBatch(decodeBody(codec, body))).toEqual({ type: 'Batch', id: 'b-1', data: { messages } });
    expect(decodeBody(codec, batchBody(codec, [encodeBody(codec, messages[0])]))).toEqual({ type: 'Batch', data: { messages: [messages[0]] } });
  });
});

describe('readBatch', () => {
  it('reads each envelope on its own, an error for each bad one, in order', () => {
    const sample = sampleMessages();
    const batch = validateBatch({ type: 'Batch', id: 'b', data: { messages: [sample.JobAccepted, { type: 'Heartbeat', id: 'h', data: {} }, sample.LogChunk] } });
    const items = [...readBatch(batch, (e) => readBatchedNodeMessage(CODEC_JSON, e))];
    expect(items.map((i) => ('error' in i ? i.error.replyTo : i.message.type))).toEqual(['JobAccepted', 'h', 'LogChunk']);
  });

  it.each([
    ['a short pad', 'x'.repeat(1000), undefined],
    ['a pad past a Heartbeat’s 4 KiB', 'x'.repeat(5000), /over the 4096 bytes a Heartbeat may have/],
    ['300 items', Array(300).fill(0), /more than the 256 items/],
  ])('holds a Heartbeat with %s to a Heartbeat’s own limits', (_name, pad, refused) => {
    const heartbeat = { ...sampleMessages().Heartbeat, id: 'h', pad };
    for (const codec of [CODEC_JSON, CODEC_MSGPACK] as const) {
      const read = (): unknown => readBatchedNodeMessage(codec, heartbeat);
      if (refused === undefined) expect(read()).toEqual(heartbeat);
      else expect(read).toThrow(refused);
    }
  });

  it('refuses the whole of a Batch that holds a Batch, before reading any', () => {
    let read = 0;
    const batch = validateBatch({ type: 'Batch', id: 'outer', data: { messages: [{ type: 'X', data: {} }, { type: 'Batch', data: { messages: [] } }] } });
    const items = [...readBatch(batch, () => read++)];
    expect(read).toBe(0);
    expect(items).toMatchObject([{ error: { code: 'invalid_message', replyTo: 'outer', field: 'data.messages.1' } }]);
  });
});

describe('BatchCoalescer', () => {
  /** A coalescer whose flushes run when the test says, writing decoded frames. */
  function coalescer(maxBodyBytes = 1 << 20) {
    const frames: unknown[] = [];
    let due: (() => void) | undefined;
    let ids = 0;
    const c = new BatchCoalescer({
      codec: CODEC_JSON,
      maxBodyBytes,
      write: (body, types) => {
        expect(body.length).toBeLessThanOrEqual(maxBodyBytes);
        const decoded = decodeBody(CODEC_JSON, body) as { type: string; data: { messages?: unknown[] } };
        expect(decoded.type === 'Batch' ? decoded.data.messages?.length : 1).toBe(types.length);
        frames.push(decoded);
      },
      batchId: () => `b-${++ids}`,
      schedule: (flush) => {
        expect(due).toBeUndefined();
        due = flush;
      },
    });
    const add = (ms: Array<Record<string, unknown>>): void => ms.forEach((m) => c.add('Telemetry', encodeBody(CODEC_JSON, m)));
    const turnEnds = (): void => {
      const flush = due;
      due = undefined;
      flush?.();
    };
    return { c, frames, add, turnEnds };
  }

  it('holds a burst to the end of the turn and sends it as one Batch', () => {
    const { frames, add, turnEnds } = coalescer();
    add(envelopes(3));
    expect(frames).toEqual([]);
    turnEnds();
    expect(frames).toEqual([{ type: 'Batch', id: 'b-1', data: { messages: envelopes(3) } }]);
  });

  it('sends a burst of one as it is', () => {
    const { frames, add, turnEnds } = coalescer();
    add(envelopes(1));
    turnEnds();
    expect(frames).toEqual(envelopes(1));
  });

  it('splits at BATCH_MAX envelopes and at the frame size, keeping the order', () => {
    const big = coalescer();
    big.add(envelopes(BATCH_MAX + 10));
    big.turnEnds();
    expect(big.frames.map((f) => (f as { data: { messages: unknown[] } }).data.messages.length)).toEqual([BATCH_MAX, 10]);
    const small = coalescer(400);
    small.add(envelopes(20));
    small.turnEnds();
    const ids = small.frames.flatMap((f) => (f as { type: string; id: string; data: { messages?: Array<{ id: string }> } }).data.messages?.map((m) => m.id) ?? [(f as { id: string }).id]);
    expect(ids).toEqual(envelopes(20).map((e) => e.id));
    expect(small.frames.length).toBeGreaterThan(1);
  });

  it('keeps a Batch to BATCH_TARGET_BYTES under a larger frame limit: a large message goes alone', () => {
    const { frames, add, turnEnds } = coalescer(1 << 20);
    const big = (id: string) => ({ type: 'Telemetry', id, data: { text: 'x'.repeat(BATCH_TARGET_BYTES / 2) } });
    add([big('a'), big('b'), big('c')]);
    turnEnds();
    expect(frames.map((f) => (f as { type: string }).type)).toEqual(['Telemetry', 'Telemetry', 'Telemetry']);
  });

  it('writes what it holds at once on flush (before a message that is not held), and schedules again after', () => {
    const { c, frames, add, turnEnds } = coalescer();
    add(envelopes(2));
    c.flush();
    expect(frames).toHaveLength(1);
    turnEnds(); // nothing left: writes nothing
    expect(frames).toHaveLength(1);
    add(envelopes(1));
    turnEnds();
    expect(frames).toHaveLength(2);
  });
});
