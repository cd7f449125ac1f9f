// W3C traceparent values: what is valid, and that fresh and child values always are.
import { expect, it } from 'vitest';
import { childTraceparent, isTraceparent, newTraceparent, traceparentOrNew } from '../../../supervisor/cluster/traceparent.js';

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

it('accepts the specification example and refuses zero ids, upper case, version ff and junk', () => {
  expect(isTraceparent(VALID)).toBe(true);
  expect(isTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future')).toBe(true);
  for (const bad of [
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    `${VALID}-extra`,
    '',
    'x'.repeat(600),
    42,
    undefined,
  ]) {
    expect(isTraceparent(bad), String(bad)).toBe(false);
  }
});

it('makes valid fresh values, children in the parent trace, and keeps a valid given one', () => {
  const fresh = newTraceparent();
  expect(isTraceparent(fresh)).toBe(true);
  expect(newTraceparent()).not.toBe(fresh);
  const child = childTraceparent(VALID);
  expect(isTraceparent(child)).toBe(true);
  expect(child.slice(0, 36)).toBe(VALID.slice(0, 36));
  expect(child).not.toBe(VALID);
  expect(isTraceparent(childTraceparent('garbage'))).toBe(true);
  expect(traceparentOrNew(VALID)).toBe(VALID);
  expect(isTraceparent(traceparentOrNew('garbage'))).toBe(true);
});
