// The lease's timing rules on a made-up clock: fencing before TTL - margin, and no judging of
// peers until a full TTL of being connected and unfenced.
import { describe, expect, it } from 'vitest';
import { LeaseGuard } from '../../../supervisor/cluster/lease-guard.js';

const TTL = 10_000;
const MARGIN = 2_000;

function acquired(at = 0): LeaseGuard {
  const guard = new LeaseGuard({ ttlMs: TTL, marginMs: MARGIN });
  guard.renewed(at, at);
  return guard;
}

describe('LeaseGuard', () => {
  it('is fenced until the lease is taken', () => {
    const guard = new LeaseGuard({ ttlMs: TTL, marginMs: MARGIN });
    expect(guard.isFenced()).toBe(true);
    expect(guard.mayJudge(0)).toBe(false);
    guard.renewed(100, 120);
    expect(guard.isFenced()).toBe(false);
  });

  it('fences at the last acknowledged send + TTL - margin, measured from the send, not the ack', () => {
    const guard = acquired(0);
    guard.renewed(2_000, 3_500); // acknowledged late: the deadline still counts from the send
    expect(guard.fenceAt()).toBe(2_000 + TTL - MARGIN);
    expect(guard.checkFence(9_999)).toBe(false);
    expect(guard.isFenced()).toBe(false);
    expect(guard.checkFence(10_000)).toBe(true);
    expect(guard.isFenced()).toBe(true);
    expect(guard.checkFence(10_001)).toBe(false); // fenced once
  });

  it('an older acknowledgement arriving late does not move the deadline back', () => {
    const guard = acquired(0);
    guard.renewed(4_000, 4_100);
    guard.renewed(2_000, 4_200);
    expect(guard.fenceAt()).toBe(4_000 + TTL - MARGIN);
  });

  it('a renewal acknowledged after the deadline does not unfence', () => {
    const guard = acquired(0);
    expect(guard.checkFence(8_000)).toBe(true);
    guard.renewed(-5_000, 8_100); // sent long ago, its deadline is past
    expect(guard.isFenced()).toBe(true);
    guard.renewed(8_200, 8_300);
    expect(guard.isFenced()).toBe(false);
  });

  it('judges peers only after a full TTL connected and unfenced', () => {
    const guard = acquired(0);
    expect(guard.mayJudge(TTL - 1)).toBe(false);
    guard.renewed(TTL - 1_000, TTL - 990);
    expect(guard.mayJudge(TTL)).toBe(true);
  });

  it('after a disconnect, waits a full TTL from the reconnect', () => {
    const guard = acquired(0);
    guard.renewed(9_000, 9_010);
    expect(guard.mayJudge(10_000)).toBe(true);
    guard.disconnected();
    expect(guard.mayJudge(10_500)).toBe(false);
    guard.reconnected(11_000);
    guard.renewed(11_000, 11_010);
    expect(guard.judgeFrom()).toBe(11_000 + TTL);
    guard.renewed(19_000, 19_010);
    expect(guard.mayJudge(20_999)).toBe(false);
    expect(guard.mayJudge(21_000)).toBe(true);
  });

  it('after being fenced, waits a full TTL from the renewal that unfenced it', () => {
    const guard = acquired(0);
    guard.checkFence(8_000);
    guard.renewed(12_000, 12_050); // connection never dropped: renewals just failed
    expect(guard.judgeFrom()).toBe(12_050 + TTL);
    guard.renewed(20_000, 20_010);
    expect(guard.mayJudge(22_049)).toBe(false);
    expect(guard.mayJudge(22_050)).toBe(true);
  });

  it('a lost lease fences at once and judging waits for the new lease plus a TTL', () => {
    const guard = acquired(0);
    guard.renewed(9_000, 9_010);
    guard.lost(10_000);
    expect(guard.isFenced()).toBe(true);
    expect(guard.mayJudge(10_000)).toBe(false);
    guard.renewed(10_100, 10_200);
    expect(guard.judgeFrom()).toBe(10_200 + TTL);
  });

  it('refuses a margin outside (0, TTL)', () => {
    expect(() => new LeaseGuard({ ttlMs: 1_000, marginMs: 0 })).toThrow(RangeError);
    expect(() => new LeaseGuard({ ttlMs: 1_000, marginMs: 1_000 })).toThrow(RangeError);
  });
});
