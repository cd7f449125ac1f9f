// `muster completion`: the scripts come from the `muster` command and are run by a real bash; every
// command's every option (as `--help` knows them, from the command tree) is offered.
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import type { Command } from 'commander';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../cli/main.js';
import { MUSTER_BIN } from '../muster-process.js';


function run(file: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: tmpdir(), timeout: 25_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Every command path (`''`, `token create`, ...) with its long options, from commander's own help. */
function commandsWithOptions(): { path: string; longs: string[]; subcommands: string[] }[] {
  const found: { path: string; longs: string[]; subcommands: string[] }[] = [];
  const visit = (command: Command, path: string[]): void => {
    const help = command.createHelp();
    const subs = help.visibleCommands(command).filter((c) => c.name() !== 'help');
    const longs = help.visibleOptions(command).flatMap((o) => (o.long === undefined ? [] : [o.long]));
    found.push({ path: path.join(' '), longs, subcommands: subs.map((c) => c.name()) });
    for (const sub of subs) visit(sub, [...path, sub.name()]);
  };
  visit(buildProgram(), []);
  return found;
}

describe('muster completion', () => {
  let bash: string;

  beforeAll(async () => {
    const printed = await run(MUSTER_BIN, ['completion', 'bash']);
    expect(printed.code).toBe(0);
    bash = printed.stdout;
  });

  it('offers every option and subcommand of every command in bash', async () => {
    const commands = commandsWithOptions();
    // One bash run: for each command, what completing `muster <path> ` and `muster <path> --` offers.
    const probes = commands.map(({ path }) => {
      const words = ['muster', ...(path === '' ? [] : path.split(' '))];
      return [
        `COMP_WORDS=(${words.join(' ')} ""); COMP_CWORD=${words.length}; _muster; echo "${path}|\${COMPREPLY[*]}"`,
        `COMP_WORDS=(${words.join(' ')} "--"); COMP_CWORD=${words.length}; _muster; echo "${path}|\${COMPREPLY[*]}"`,
      ].join('\n');
    });
    const out = await run('bash', ['-c', `${bash}\n${probes.join('\n')}`]);
    expect(out.stderr).toBe('');
    const offered = new Map<string, Set<string>>();
    for (const line of out.stdout.trim().split('\n')) {
      const [path = '', words = ''] = line.split('|');
      const set = offered.get(path) ?? new Set<string>();
      for (const w of words.split(' ')) set.add(w);
      offered.set(path, set);
    }
    for (const { path, longs, subcommands } of commands) {
      expect([...(offered.get(path) ?? [])], `muster ${path}`).toEqual(expect.arrayContaining([...longs, ...subcommands]));
    }
    expect(commands.find((c) => c.path === 'agent')?.longs).toEqual(expect.arrayContaining(['--url', '--name', '--config']));
  });

  it('completes an option value from its choices', async () => {
    const out = await run('bash', ['-c', `${bash}\nCOMP_WORDS=(muster token create --role ""); COMP_CWORD=4; _muster; echo "\${COMPREPLY[*]}"`]);
    expect(out.stdout.trim()).toBe('node viewer operator admin');
  });

  it('prints zsh (through bashcompinit) and fish scripts with every option', async () => {
    const zsh = await run(MUSTER_BIN, ['completion', 'zsh']);
    expect(zsh.stdout).toMatch(/^# muster completion for zsh[^\n]*\nautoload -U \+X bashcompinit && bashcompinit\n/);
    expect(zsh.stdout).toContain('complete -o default -F _muster muster');
    const fish = (await run(MUSTER_BIN, ['completion', 'fish'])).stdout;
    for (const { longs } of commandsWithOptions()) for (const long of longs) expect(fish).toContain(`-l ${long.slice(2)}`);
    expect(fish).toContain("complete -c muster -n '__fish_seen_subcommand_from token; and not __fish_seen_subcommand_from create list revoke' -a create");
  });

  it('refuses a shell it does not know', async () => {
    const out = await run(MUSTER_BIN, ['completion', 'tcsh']);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^muster: .*tcsh/);
  });
});
