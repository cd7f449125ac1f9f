// One node connection's message and byte rates and reading time on a frozen clock: the burst passes, frames over
// the rate are dropped, the node is answered at most once a second, and the answers add up to abuse.
import { describe, expect, it } from 'vitest';
import { NodeRateLimit } from '../../../supervisor/security/node-rate-limit.js';

describe('NodeRateLimit', () => {
  const rates = { messagesPerSecond: 1, messageBurst: 5, bytesPerSecond: 1_000, byteBurst: 2_000, banAfterViolations: 3 };

  it('passes the burst, then drops, answering at most once a second, and calls it abuse on the third answer', () => {
    const limit = new NodeRateLimit(rates, 0);
    for (let i = 0; i < 5; i++) expect(limit.admit(10, 0)).toBe(true);
    expect(limit.admit(10, 0)).toBe(false);
    expect(limit.overRate()).toBe('answer');
    expect(limit.admit(10, 10)).toBe(false);
    expect(limit.overRate()).toBe('drop');
    limit.admit(10, 1_000); // one token back, spent
    expect(limit.admit(10, 1_001)).toBe(false);
    expect(limit.overRate()).toBe('answer');
    limit.admit(10, 2_001);
    expect(limit.admit(10, 2_002)).toBe(false);
    expect(limit.overRate()).toBe('abuse');
    expect(limit.dropped).toBe(4);
  });

  it('drops frames over the byte rate', () => {
    const limit = new NodeRateLimit({ ...rates, messagesPerSecond: 0 }, 0);
    expect(limit.admit(1_500, 0)).toBe(true);
    expect(limit.admit(1_000, 0)).toBe(false);
    expect(limit.admit(1_000, 500)).toBe(true);
  });

  it('counts reading time against the node: a frame that took the budget and more stops the next ones until it is paid back', () => {
    const limit = new NodeRateLimit({ ...rates, messagesPerSecond: 0, bytesPerSecond: 0, decodeMsPerSecond: 10, decodeBurstMs: 20 }, 0);
    expect(limit.admit(10, 0)).toBe(true);
    limit.chargeDecoding(56, 0); // one frame of the trial: 56 ms of the event loop
    expect(limit.admit(10, 0)).toBe(false);
    expect(limit.admit(10, 3_500)).toBe(false); // 36 ms of debt, paid at 10 ms a second
    expect(limit.admit(10, 3_700)).toBe(true);
    expect(NodeRateLimit.unlimited({ ...rates, messagesPerSecond: 0, bytesPerSecond: 0, decodeMsPerSecond: 10 })).toBe(false);
  });

  it('says how long to stop reading: until a frame of that size could pass, at most a second', () => {
    const limit = new NodeRateLimit({ ...rates, messagesPerSecond: 0, decodeMsPerSecond: 10, decodeBurstMs: 20 }, 0);
    expect(limit.admit(2_000, 0)).toBe(true);
    expect(limit.admit(500, 0)).toBe(false);
    expect(limit.pauseMs(500, 0)).toBe(500); // 500 bytes at 1,000 a second
    expect(limit.pauseMs(500, 400)).toBe(100);
    limit.chargeDecoding(25, 500); // 5 ms in debt
    expect(limit.pauseMs(1, 500)).toBe(500); // paid back at 10 ms a second
    limit.chargeDecoding(1_000, 500);
    expect(limit.pauseMs(1, 500)).toBe(1_000); // capped: the node is still heard within its liveness window
  });

  it('is unlimited with both rates at 0', () => {
    expect(NodeRateLimit.unlimited({ ...rates, messagesPerSecond: 0, bytesPerSecond: 0 })).toBe(true);
    expect(NodeRateLimit.unlimited(rates)).toBe(false);
  });
});
