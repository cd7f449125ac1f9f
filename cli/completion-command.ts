// `muster completion bash|zsh|fish`: prints a shell completion script, generated from the
// commander command tree (commands, their options and the options' choices), so it stays
// complete as commands change. zsh loads the bash script through bashcompinit.
import { Argument, Command, type Option } from 'commander';

/** One command of the tree, by its path (`token create`), with what may follow it. */
interface CompletionNode {
  path: string;
  subcommands: { name: string; description: string }[];
  /** Values an argument of the command takes from a fixed list (`completion <shell>`). */
  argumentChoices: readonly string[];
  options: { flags: string[]; description: string; takesValue: boolean; choices: readonly string[] }[];
}

export function completionCommand(): Command {
  return new Command('completion')
    .description('print a shell completion script: source <(muster completion bash)')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
    .action((shell: 'bash' | 'zsh' | 'fish', _options: unknown, command: Command) => {
      const nodes = completionTree(rootOf(command));
      const script = shell === 'fish' ? fishScript(nodes) : shell === 'zsh' ? zshScript(nodes) : bashScript(nodes);
      process.stdout.write(script);
    });
}

function rootOf(command: Command): Command {
  let root = command;
  while (root.parent !== null) root = root.parent;
  return root;
}

/** Every command of the tree, parents before children; what `--help` would show of each. */
export function completionTree(root: Command): CompletionNode[] {
  const nodes: CompletionNode[] = [];
  const visit = (command: Command, path: string): void => {
    const help = command.createHelp();
    const subcommands = help.visibleCommands(command).filter((c) => c.name() !== 'help');
    nodes.push({
      path,
      subcommands: subcommands.map((c) => ({ name: c.name(), description: c.description() })),
      argumentChoices: command.registeredArguments.flatMap((a) => a.argChoices ?? []),
      options: help.visibleOptions(command).map(optionOf),
    });
    for (const sub of subcommands) visit(sub, path === '' ? sub.name() : `${path} ${sub.name()}`);
  };
  visit(root, '');
  return nodes;
}

function optionOf(option: Option): CompletionNode['options'][number] {
  return {
    flags: [option.short, option.long].filter((f): f is string => f !== undefined),
    description: option.description,
    takesValue: option.required || option.optional,
    choices: option.argChoices ?? [],
  };
}

function bashScript(nodes: CompletionNode[]): string {
  const paths = nodes.filter((n) => n.path !== '').map((n) => `"${n.path}"`);
  const valueCases: string[] = [];
  const wordCases: string[] = [];
  for (const node of nodes) {
    for (const option of node.options.filter((o) => o.takesValue)) {
      const patterns = option.flags.map((f) => `"${node.path}|${f}"`).join('|');
      // A value without choices (a file, a URL, a name): the shell's default completion.
      const reply = option.choices.length > 0 ? `COMPREPLY=($(compgen -W "${option.choices.join(' ')}" -- "$cur"))` : 'COMPREPLY=()';
      valueCases.push(`    ${patterns}) ${reply}; return ;;`);
    }
    const words = [...node.subcommands.map((s) => s.name), ...node.argumentChoices, ...node.options.flatMap((o) => o.flags)];
    wordCases.push(`    "${node.path}") words="${words.join(' ')}" ;;`);
  }
  return `# muster completion for bash: source <(muster completion bash)
_muster() {
  local cur prev path next word words i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  path=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    [[ "$word" == "--" ]] && return
    next="\${path:+$path }$word"
    case "$next" in
      ${paths.join('|')}) path="$next" ;;
    esac
  done
  case "$path|$prev" in
${valueCases.join('\n')}
  esac
  case "$path" in
${wordCases.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _muster muster
`;
}

function zshScript(nodes: CompletionNode[]): string {
  return `# muster completion for zsh: source <(muster completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashScript(nodes)}`;
}

function fishScript(nodes: CompletionNode[]): string {
  const lines = ['# muster completion for fish: muster completion fish | source', 'complete -c muster -f'];
  for (const node of nodes) {
    const condition = fishCondition(node, nodes);
    for (const sub of node.subcommands) {
      lines.push(`complete -c muster -n '${condition}' -a ${sub.name} -d ${fishQuote(sub.description)}`);
    }
    if (node.argumentChoices.length > 0) lines.push(`complete -c muster -n '${condition}' -a ${fishQuote(node.argumentChoices.join(' '))}`);
    for (const option of node.options) {
      const flags = option.flags.map((f) => (f.startsWith('--') ? `-l ${f.slice(2)}` : `-s ${f.slice(1)}`)).join(' ');
      const value = option.choices.length > 0 ? ` -x -a ${fishQuote(option.choices.join(' '))}` : option.takesValue ? ' -r -F' : '';
      lines.push(`complete -c muster -n '${condition}' ${flags}${value} -d ${fishQuote(option.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Fish's test for "the words so far name this command and none of its subcommands". */
function fishCondition(node: CompletionNode, nodes: CompletionNode[]): string {
  if (node.path === '') return '__fish_use_subcommand';
  const seen = node.path.split(' ').map((name) => `__fish_seen_subcommand_from ${name}`);
  const deeper = nodes.find((n) => n.path === node.path)?.subcommands.map((s) => s.name) ?? [];
  if (deeper.length > 0) seen.push(`not __fish_seen_subcommand_from ${deeper.join(' ')}`);
  return seen.join('; and ');
}

function fishQuote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
