import { describe, it, expect } from 'vitest';
import { parseTtl } from '../../../supervisor/tokens/ttl.js';

describe('parseTtl', () => {
  it.each([
    ['3600', 3600],
    ['3600s', 3600],
    ['30m', 1800],
    ['1h', 3600],
    ['2d', 172_800],
    [' 1H ', 3600],
  ])('reads %j as %d seconds', (text, seconds) => {
    expect(parseTtl(text)).toBe(seconds);
  });

  it.each(['', 'h', '1w', '-5m', '1.5h', '0', '0s', 'ten', '1h30m', '99999999999999999d'])('refuses %j', (text) => {
    expect(() => parseTtl(text)).toThrow(/invalid ttl/);
  });
});
