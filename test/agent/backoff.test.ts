import { describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/backoff.js';

describe('Backoff', () => {
  it('doubles the ceiling from 250 ms and draws the delay below it (full jitter)', () => {
    const b = new Backoff({ random: () => 0.999999 });
    const delays = Array.from({ length: 5 }, () => b.next());
    expect(delays).toEqual([249, 499, 999, 1999, 3999]);
    const low = new Backoff({ random: () => 0 });
    expect([low.next(), low.next()]).toEqual([0, 0]);
  });

  it('never exceeds the 30 s cap, however many failures', () => {
    const b = new Backoff();
    for (let i = 0; i < 200; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(30_000);
    }
    const top = new Backoff({ random: () => 0.999999 });
    for (let i = 0; i < 100; i++) top.next();
    expect(top.next()).toBe(29_999);
  });

  it('starts over after reset', () => {
    const b = new Backoff({ random: () => 0.999999 });
    for (let i = 0; i < 10; i++) b.next();
    expect(b.attempts).toBe(10);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(249);
  });

  it('spreads delays (jitter), so a fleet does not reconnect in lockstep', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) {
      const b = new Backoff();
      for (let k = 0; k < 4; k++) b.next();
      seen.add(b.next());
    }
    expect(seen.size).toBeGreaterThan(10);
  });

  it('draws below a limit the caller gives for one delay, and still climbs the curve', () => {
    const b = new Backoff({ random: () => 0.999999 });
    for (let i = 0; i < 6; i++) b.next();
    expect(b.next(500)).toBe(499);
    expect(b.attempts).toBe(7);
    expect(b.next()).toBe(29_999);
  });
});
