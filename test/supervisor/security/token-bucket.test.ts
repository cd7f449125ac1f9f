// The token bucket behind every rate limit: burst, refill from the clock, no refill past the
// burst, and a clock that goes nowhere (or backwards) hands out nothing.
import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../../supervisor/security/token-bucket.js';

describe('TokenBucket', () => {
  it('gives the burst at once, then nothing until time passes', () => {
    const bucket = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) expect(bucket.take(1, 0)).toBe(true);
    expect(bucket.take(1, 0)).toBe(false);
  });

  it('refills at the rate: 10/s gives one token each 100 ms', () => {
    const bucket = new TokenBucket(10, 5, 0);
    for (let i = 0; i < 5; i++) bucket.take(1, 0);
    expect(bucket.take(1, 50)).toBe(false);
    expect(bucket.take(1, 100)).toBe(true);
    expect(bucket.take(1, 150)).toBe(false);
    expect(bucket.take(1, 200)).toBe(true);
  });

  it('never saves more than the burst, however long it is idle', () => {
    const bucket = new TokenBucket(1_000, 3, 0);
    expect(bucket.available(3_600_000)).toBe(3);
    for (let i = 0; i < 3; i++) expect(bucket.take(1, 3_600_000)).toBe(true);
    expect(bucket.take(1, 3_600_000)).toBe(false);
  });

  it('takes amounts (bytes) and takes nothing when there are too few', () => {
    const bucket = new TokenBucket(1_000, 1_000, 0);
    expect(bucket.take(600, 0)).toBe(true);
    expect(bucket.take(600, 0)).toBe(false);
    expect(bucket.available(0)).toBe(400);
    expect(bucket.take(600, 200)).toBe(true);
  });

  it('adds nothing when the clock stands still or goes back', () => {
    const bucket = new TokenBucket(10, 1, 1_000);
    expect(bucket.take(1, 1_000)).toBe(true);
    expect(bucket.take(1, 500)).toBe(false);
    expect(bucket.take(1, 1_000)).toBe(false);
    expect(bucket.take(1, 1_100)).toBe(true);
  });

  it('says how long it takes to fill up', () => {
    expect(new TokenBucket(50, 200, 0).fillMs).toBe(4_000);
  });

  it('refuses a rate or burst that cannot work', () => {
    expect(() => new TokenBucket(0, 5)).toThrow(/rate/);
    expect(() => new TokenBucket(5, 0)).toThrow(/burst/);
    expect(() => new TokenBucket(Number.NaN, 5)).toThrow(/rate/);
  });

  it('uses the monotonic clock by default', () => {
    const bucket = new TokenBucket(1, 2);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
  });
});
