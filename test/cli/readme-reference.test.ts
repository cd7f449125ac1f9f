// The README's CLI reference is complete: every command, every long flag and every
// environment variable that `muster --help` knows appears in its "CLI" section.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/main.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const CLI_SECTION = README.slice(README.indexOf('\n## CLI\n'), README.indexOf('\n## Configuration\n'));

interface Documented {
  command: string;
  item: string;
}

function everything(command: Command, path: string[] = []): Documented[] {
  const name = path.join(' ');
  const out: Documented[] = [];
  if (path.length > 0) out.push({ command: name, item: `muster ${name}` });
  for (const option of command.options) {
    if (option.long !== undefined && option.long !== '--version') out.push({ command: name, item: option.long });
    if (option.envVar !== undefined) out.push({ command: name, item: option.envVar });
  }
  for (const sub of command.commands) out.push(...everything(sub, [...path, sub.name()]));
  return out;
}

describe('README CLI reference', () => {
  it('names every command, flag and environment variable of `muster`', () => {
    expect(CLI_SECTION.length).toBeGreaterThan(100);
    const missing = everything(buildProgram())
      .filter(({ item }) => !CLI_SECTION.includes(item))
      .map(({ command, item }) => `${command || 'muster'}: ${item}`);
    expect(missing).toEqual([]);
  });
});
