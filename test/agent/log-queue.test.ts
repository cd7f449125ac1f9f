import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LogQueue } from '../../agent/log-queue.js';

function capture(): { logger: pino.Logger; lines: () => string[] } {
  const out: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'warn' }, dest), lines: () => out };
}

const chunk = (seq: number, data: string) => ({
  chunk: { job_id: randomUUID(), attempt: 1, stream: 'stdout' as const, seq, data },
});

describe('LogQueue', () => {
  it('keeps chunks in order up to its bound, then drops with one warning', () => {
    const { logger, lines } = capture();
    const q = new LogQueue(logger, 10);
    q.push(chunk(0, 'aaaa'));
    q.push(chunk(1, 'bbbb'));
    q.push(chunk(2, 'cccc'));
    q.push(chunk(3, 'dddd'));
    expect(q.length).toBe(2);
    expect(q.droppedCount).toBe(2);
    expect(lines().filter((l) => l.includes('dropping log chunks'))).toHaveLength(1);
    expect(q.drain().map((i) => i.chunk.seq)).toEqual([0, 1]);
    expect(q.length).toBe(0);
    q.push(chunk(4, 'eeeeeeee'));
    expect(q.drain().map((i) => i.chunk.seq)).toEqual([4]);
  });
});
