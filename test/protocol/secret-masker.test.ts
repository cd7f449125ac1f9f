// The secret masker (PROTOCOL.md section 4 rule 11): examples, then fast-check properties that
// hold it to the algorithm it replaced (kept below as the reference: it looked at every character
// that could begin a secret), over random secrets, secrets that overlap or start one another,
// and random splits of a stream into pieces; and that masked output never holds a secret.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SECRET_MASK, SecretMasker } from '../../protocol/secret-masker.js';
import { splitUtf8 } from '../../agent/output-stream.js';

/** The masker before the compiled search, as it was (reference for the properties). */
class ReferenceMasker {
  private readonly secrets: readonly string[];
  private readonly firstChars: ReadonlySet<string>;
  private held = '';

  constructor(secrets: Iterable<string>) {
    this.secrets = [...new Set(secrets)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
    this.firstChars = new Set(this.secrets.map((s) => s[0]!));
  }

  get active(): boolean {
    return this.secrets.length > 0;
  }

  mask(text: string): string {
    return this.scan(text, true).out;
  }

  push(text: string): string {
    if (!this.active) return text;
    const { out, rest } = this.scan(this.held + text, false);
    this.held = rest;
    return out;
  }

  end(): string {
    const held = this.held;
    this.held = '';
    return held;
  }

  private scan(text: string, final: boolean): { out: string; rest: string } {
    if (!this.active) return { out: text, rest: '' };
    let out = '';
    let runStart = 0;
    let i = 0;
    while (i < text.length) {
      if (!this.firstChars.has(text[i]!)) {
        i += 1;
        continue;
      }
      const hit = this.matchAt(text, i, final);
      if (hit === 'undecided') {
        return { out: out + text.slice(runStart, i), rest: text.slice(i) };
      }
      if (hit === 0) {
        i += 1;
        continue;
      }
      out += text.slice(runStart, i) + SECRET_MASK;
      i += hit;
      runStart = i;
    }
    return { out: out + text.slice(runStart), rest: '' };
  }

  private matchAt(text: string, at: number, final: boolean): number | 'undecided' {
    const remaining = text.length - at;
    for (const secret of this.secrets) {
      if (secret.length <= remaining) {
        if (text.startsWith(secret, at)) return secret.length;
      } else if (!final && secret.startsWith(text.slice(at))) {
        return 'undecided';
      }
    }
    return 0;
  }
}

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

describe('SecretMasker against the reference', () => {
  // A small alphabet makes secrets overlap, repeat and start one another; `*` is left out of
  // secrets so that `***` itself can never be (part of) one.
  const letter = fc.constantFrom('a', 'b', 'c', 'a', 'b', '.', '(', '\n', 'é', '\u{1F600}');
  const word = (maxLength: number): fc.Arbitrary<string> => fc.string({ unit: letter, minLength: 1, maxLength });
  // Random secrets, or prefixes of one word (each secret starts the longer ones), or both.
  const secretSets = fc.oneof(
    fc.array(word(6), { minLength: 1, maxLength: 6 }),
    word(8).chain((base) => fc.uniqueArray(fc.integer({ min: 1, max: base.length }), { minLength: 1, maxLength: 4 }).map((ends) => ends.map((e) => base.slice(0, e)))),
    fc.tuple(fc.array(word(5), { maxLength: 3 }), word(7)).map(([some, base]) => [...some, base, base.slice(1), base.slice(0, -1)].filter((s) => s.length > 0)),
  );
  /** Secrets, a text made of them and of other words and `*`, and places to cut it. */
  const cases = secretSets.chain((secrets) =>
    fc
      .array(fc.oneof(fc.constantFrom(...secrets), word(4), fc.constant('*')), { maxLength: 30 })
      .chain((parts) => {
        const text = parts.join('');
        return fc.tuple(fc.constant(secrets), fc.constant(text), fc.uniqueArray(fc.integer({ min: 0, max: text.length }), { maxLength: 8 }));
      }),
  );

  function pieces(text: string, cuts: number[]): string[] {
    const at = [0, ...[...cuts].sort((a, b) => a - b), text.length];
    return at.slice(1).map((end, k) => text.slice(at[k], end));
  }

  it('masks a whole text exactly as the reference does', () => {
    fc.assert(
      fc.property(cases, ([secrets, text]) => {
        expect(new SecretMasker(secrets).mask(text)).toBe(new ReferenceMasker(secrets).mask(text));
      }),
      { numRuns: 500 },
    );
  });

  it('masks each piece of a stream exactly as the reference does, and ends with its held tail masked', () => {
    fc.assert(
      fc.property(cases, ([secrets, text, cuts]) => {
        const fast = new SecretMasker(secrets);
        const reference = new ReferenceMasker(secrets);
        for (const piece of pieces(text, cuts)) expect(fast.push(piece)).toBe(reference.push(piece));
        // The one change: the reference released its held tail as it was, a shorter secret in it too.
        expect(fast.end()).toBe(reference.mask(reference.end()));
      }),
      { numRuns: 500 },
    );
  });

  it('gives a stream, however it is cut, the masking of its whole text, and never a secret', () => {
    fc.assert(
      fc.property(cases, ([secrets, text, cuts]) => {
        const m = new SecretMasker(secrets);
        const streamed = pieces(text, cuts).map((piece) => m.push(piece)).join('') + m.end();
        expect(streamed).toBe(m.mask(text));
        for (const secret of secrets) expect(streamed.includes(secret), `${JSON.stringify(secret)} in ${JSON.stringify(streamed)}`).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('masks a shorter secret held at the end of a stream as the start of a longer one (the reference leaked it)', () => {
    const m = new SecretMasker(['abc', 'b']);
    expect([m.push('xab'), m.end()].join('')).toBe('xa***');
    const reference = new ReferenceMasker(['abc', 'b']);
    expect([reference.push('xab'), reference.end()].join('')).toBe('xab');
  });

  it('takes secrets with every character a RegExp reads as syntax literally', () => {
    const secrets = ['a.b', '(x|y)*', '[^z]+?', '\\d{2}$', 'c/d'];
    const text = 'a.b aXb (x|y)* xy [^z]+? q \\d{2}$ 12 c/d';
    expect(new SecretMasker(secrets).mask(text)).toBe('*** aXb *** xy *** q *** 12 ***');
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
