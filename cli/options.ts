// Parsers for repeatable command-line options (`--tag k=v --tag k2=v2`), shared by the commands.
import { InvalidArgumentError } from 'commander';

/** A `HOST:PORT` listen address (`[::1]:9464` for IPv6; port 0 picks a free one), split. */
export function parseHostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  const port = Number(value.slice(at + 1));
  const host = value.slice(0, Math.max(0, at)).replace(/^\[|\]$/g, '');
  if (at <= 0 || host === '' || value.slice(at + 1) === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT (e.g. 127.0.0.1:9464), got "${value}"`);
  }
  return { host, port };
}

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
