// A session's ring of its last messages: oldest first, each with its direction, type, time, id or
// reply_to and size, at most MESSAGES_KEPT (the oldest overwritten); nothing else is kept.
import { describe, expect, it } from 'vitest';
import { MESSAGES_KEPT, MessageRing } from '../../../supervisor/nodes/message-ring.js';

const T0 = Date.parse('2026-12-01T12:00:00.000Z');

describe('MessageRing', () => {
  it('lists nothing before the first message', () => {
    expect(new MessageRing().list()).toEqual([]);
  });

  it('lists messages in and out, oldest first, with their ids and sizes', () => {
    const ring = new MessageRing();
    ring.in('RegisterNode', 'r1', 412, T0);
    ring.out('RegisterAck', 'r1', 300, T0 + 1);
    ring.in('Heartbeat', undefined, 0, T0 + 2);
    ring.out('Configure', undefined, 40, T0 + 3);
    expect(ring.list()).toEqual([
      { direction: 'in', type: 'RegisterNode', id: 'r1', bytes: 412, at: '2026-12-01T12:00:00.000Z' },
      { direction: 'out', type: 'RegisterAck', reply_to: 'r1', bytes: 300, at: '2026-12-01T12:00:00.001Z' },
      { direction: 'in', type: 'Heartbeat', bytes: 0, at: '2026-12-01T12:00:00.002Z' },
      { direction: 'out', type: 'Configure', bytes: 40, at: '2026-12-01T12:00:00.003Z' },
    ]);
  });

  it(`keeps the last ${MESSAGES_KEPT}: the oldest are overwritten`, () => {
    const ring = new MessageRing();
    const total = MESSAGES_KEPT * 2 + 5;
    for (let n = 0; n < total; n++) ring.in('LogChunk', `m${n}`, n, T0 + n);
    const list = ring.list();
    expect(list).toHaveLength(MESSAGES_KEPT);
    expect(list[0]).toMatchObject({ id: `m${total - MESSAGES_KEPT}`, bytes: total - MESSAGES_KEPT });
    expect(list.at(-1)).toMatchObject({ id: `m${total - 1}`, bytes: total - 1, direction: 'in' });
  });
});
