// The README's CLI reference is complete: one row per command, naming every flag and every
// environment variable that the command's `--help` shows, and no row for a command that is gone.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { expect, it } from 'vitest';
import { buildProgram } from '../../cli/main.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The rows of the table under `## CLI`, by the command path their first cell names. */
function cliRows(): Map<string, string> {
  const section = README.slice(README.indexOf('\n## CLI\n'), README.indexOf('\n## ', README.indexOf('\n## CLI\n') + 1));
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const match = /^\| `muster ([a-z]+(?: [a-z]+)?)[ `]/.exec(line);
    if (match !== null) rows.set(match[1]!, line);
  }
  return rows;
}

/** Every command without subcommands, by path, with the text of its `--help`. */
function leafCommands(): Map<string, string> {
  const leaves = new Map<string, string>();
  const visit = (command: Command, path: string[]): void => {
    const subs = command.commands.filter((c) => c.name() !== 'help');
    if (subs.length === 0 && path.length > 0) leaves.set(path.join(' '), command.helpInformation());
    for (const sub of subs) visit(sub, [...path, sub.name()]);
  };
  visit(buildProgram(), []);
  return leaves;
}

it('has a row for every command and none for a command that does not exist', () => {
  expect([...cliRows().keys()].sort()).toEqual([...leafCommands().keys()].sort());
});

it("names every flag and variable of each command's --help in its row", () => {
  const rows = cliRows();
  for (const [path, help] of leafCommands()) {
    const row = rows.get(path) ?? '';
    // The options' own lines (`  -f, --follow ...`), not flags that descriptions mention.
    const flags = [...help.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((f) => f !== '--help');
    const variables = [...help.matchAll(/\bMUSTER_[A-Z_]+\b/g)].map((m) => m[0]);
    for (const flag of new Set(flags)) expect(row, `muster ${path}: ${flag}`).toMatch(new RegExp(`\`${flag}(?![\\w-])`));
    for (const variable of new Set(variables)) expect(row, `muster ${path}: ${variable}`).toContain(variable);
  }
});
