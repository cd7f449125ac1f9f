// Parsers for repeatable command-line options (`--tag k=v --tag k2=v2`), shared by the commands.
import { InvalidArgumentError } from 'commander';

/** Collects every use of a repeatable option into a list. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Collects `KEY=VALUE` uses into a map; the value may itself contain `=`. */
export function collectKeyValue(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}
