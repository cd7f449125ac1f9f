import { describe, expect, it } from 'vitest';
import { SecretMasker } from '../../protocol/secret-masker.js';
import { splitUtf8 } from '../../agent/output-stream.js';

describe('SecretMasker', () => {
  it('replaces every exact secret value with ***', () => {
    const m = new SecretMasker(['hunter2', 'tok-123']);
    expect(m.mask('a hunter2 b tok-123 c hunter2')).toBe('a *** b *** c ***');
  });

  it('ignores empty secrets', () => {
    expect(new SecretMasker(['']).mask('abc')).toBe('abc');
  });

  it('masks a secret split across pieces of a stream, releasing what turned out harmless', () => {
    const m = new SecretMasker(['hunter2']);
    const out = [m.push('pw=hun'), m.push('ter2 and hu'), m.push('man'), m.end()];
    expect(out.join('')).toBe('pw=*** and human');
    expect(out.some((s) => s.includes('hun') && !s.includes('human'))).toBe(false);
  });

  it('prefers the longer of two secrets that share a start, even across pieces', () => {
    const m = new SecretMasker(['ab', 'abcd']);
    expect([m.push('xab'), m.push('cd'), m.end()].join('')).toBe('x***');
    expect([m.push('ab'), m.push('x'), m.end()].join('')).toBe('***x');
  });
});

describe('splitUtf8', () => {
  it('cuts at byte limits without splitting a character', () => {
    const text = 'é'.repeat(10); // 2 bytes each
    const pieces = splitUtf8(text, 5);
    expect(pieces.join('')).toBe(text);
    for (const p of pieces) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(5);
  });
});
