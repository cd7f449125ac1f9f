// Replaces exact secret values with `***` in a job's output (PROTOCOL.md section 4 rule 11): the agent
// masks what it sends, the plane masks again what it stores. Output arrives in pieces,
// so a secret may be split across two reads: the streaming form holds back any tail
// that could still turn into a secret, and releases it once the next piece decides.
// One compiled search finds the secrets (a RegExp alternation, longest first, which gives the
// leftmost match and, there, the longest secret); only the last characters of a piece, fewer
// than the longest secret, are looked at one by one, for a start of a secret cut off by the end.

export const SECRET_MASK = '***';

/** `text` as a RegExp that matches exactly it. */
function escaped(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

export class SecretMasker {
  // Longest first, so that of two secrets where one starts the other, the longer one is masked whole.
  private readonly secrets: readonly string[];
  private readonly pattern: RegExp | undefined;
  private readonly longest: number;
  private held = '';

  constructor(secrets: Iterable<string>) {
    this.secrets = [...new Set(secrets)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
    this.pattern = this.secrets.length === 0 ? undefined : new RegExp(this.secrets.map(escaped).join('|'), 'g');
    this.longest = this.secrets[0]?.length ?? 0;
  }

  get active(): boolean {
    return this.pattern !== undefined;
  }

  /** Masks a whole text at once. */
  mask(text: string): string {
    return this.pattern === undefined ? text : text.replace(this.pattern, SECRET_MASK);
  }

  /** Masks the next piece of a stream; may return less than it got, holding back a possible secret's start. */
  push(text: string): string {
    if (this.pattern === undefined) return text;
    const { out, rest } = this.scan(this.held + text);
    this.held = rest;
    return out;
  }

  /**
   * The stream has ended: releases what was held back, masked as the end of a whole text (it
   * was not the start of the longer secret it might have been, but may hold a shorter one).
   */
  end(): string {
    const held = this.held;
    this.held = '';
    return this.mask(held);
  }

  /**
   * `text` masked up to where the rest could still begin a secret (`rest`, held back). A place
   * that could begin a longer secret is undecided even where a shorter one matches there.
   */
  private scan(text: string): { out: string; rest: string } {
    const pattern = this.pattern!;
    // Only from here on can a secret be cut off by the end of the text.
    const tailFrom = Math.max(0, text.length - this.longest + 1);
    let out = '';
    let runStart = 0;
    pattern.lastIndex = 0;
    for (;;) {
      const match = pattern.exec(text);
      const at = match === null ? text.length : match.index;
      if (at >= tailFrom) {
        const open = this.undecidedFrom(text, Math.max(runStart, tailFrom), match === null ? text.length - 1 : at);
        if (open >= 0) {
          pattern.lastIndex = 0;
          return { out: out + text.slice(runStart, open), rest: text.slice(open) };
        }
      }
      if (match === null) return { out: out + text.slice(runStart), rest: '' };
      out += text.slice(runStart, at) + SECRET_MASK;
      runStart = pattern.lastIndex;
    }
  }

  /** The first place in [from, to] where the text's end cuts off a longer secret, or -1. */
  private undecidedFrom(text: string, from: number, to: number): number {
    for (let at = from; at <= to; at++) {
      const remaining = text.length - at;
      for (const secret of this.secrets) {
        if (secret.length <= remaining) break; // longest first: none longer is left
        if (secret.charCodeAt(0) === text.charCodeAt(at) && secret.startsWith(text.slice(at))) return at;
      }
    }
    return -1;
  }
}
