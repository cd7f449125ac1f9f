// Replaces exact secret values with `***` in a job's output (PROTOCOL.md section 4 rule 11): the agent
// masks what it sends, the plane masks again what it stores. Output arrives in pieces,
// so a secret may be split across two reads: the streaming form holds back any tail
// that could still turn into a secret, and releases it once the next piece decides.

export const SECRET_MASK = '***';

export class SecretMasker {
  // Longest first, so that of two secrets where one starts the other, the longer one is masked whole.
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

  /** Masks a whole text at once. */
  mask(text: string): string {
    return this.scan(text, true).out;
  }

  /** Masks the next piece of a stream; may return less than it got, holding back a possible secret's start. */
  push(text: string): string {
    if (!this.active) return text;
    const { out, rest } = this.scan(this.held + text, false);
    this.held = rest;
    return out;
  }

  /** The stream has ended: releases what was held back (it was no secret). */
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

  /** Length of the secret at `at`, 0 for none, or `undecided` when the text ends inside a possible secret. */
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
