// Parses the token lifetimes the CLI accepts (`1h`, `30m`, `3600s`, `2d`, `3600`) into seconds.
// Kept apart from the token code so the CLI can validate flags before it loads any secret.

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };

const TTL_PATTERN = /^(\d+)\s*([smhd]?)$/;

/**
 * A positive whole number of seconds from `text`: digits with an optional unit
 * `s`, `m`, `h` or `d` (no unit means seconds). Throws an Error naming the input otherwise.
 */
export function parseTtl(text: string): number {
  const match = TTL_PATTERN.exec(text.trim().toLowerCase());
  if (match === null) {
    throw new Error(`invalid ttl "${text}": expected a number with an optional unit s, m, h or d (e.g. 30m, 1h, 2d)`);
  }
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2] ?? ''] ?? 1);
  // Zero would mint a token that is already expired; huge values lose precision.
  if (seconds <= 0 || !Number.isSafeInteger(seconds)) {
    throw new Error(`invalid ttl "${text}": must be at least 1 second and a safe integer`);
  }
  return seconds;
}
