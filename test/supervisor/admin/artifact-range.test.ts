// The `Range` header of an artifact download (routes-artifacts.ts `parseRange`, RFC 9110): one
// byte range is served as asked, one past the end is unsatisfiable, anything else (several
// ranges, another unit, a reversed range) is answered with the whole artifact.
import { describe, expect, it } from 'vitest';
import { parseRange } from '../../../supervisor/admin/routes-artifacts.js';

describe('artifact Range', () => {
  it.each([
    ['bytes=0-99', { start: 0, end: 100 }],
    ['bytes=100-', { start: 100, end: 1000 }],
    ['bytes=990-5000', { start: 990, end: 1000 }],
    ['bytes=-10', { start: 990, end: 1000 }],
    ['bytes=-5000', { start: 0, end: 1000 }],
    [' bytes=5-5 ', { start: 5, end: 6 }],
  ])('%s of 1000 bytes is %j', (header, range) => {
    expect(parseRange(header, 1000)).toEqual(range);
  });

  it.each(['bytes=1000-', 'bytes=2000-3000', 'bytes=-0'])('%s of 1000 bytes is unsatisfiable', (header) => {
    expect(parseRange(header, 1000)).toBe('unsatisfiable');
  });

  it.each(['bytes=0-1,5-9', 'items=0-9', 'bytes=9-0', 'bytes=-', 'bytes=a-b', 'bytes=99999999999999999-'])('%s is not served as a range', (header) => {
    expect(parseRange(header, 1000)).toBeUndefined();
  });
});
