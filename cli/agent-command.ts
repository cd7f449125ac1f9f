// `muster agent`: runs a runner node that dials the control plane and runs its jobs.
import { Command, Option } from 'commander';
import { collect, collectKeyValue } from './options.js';

interface AgentOptions {
  url?: string[];
  token?: string;
  workDir: string;
  codec?: 'json' | 'msgpack';
  tag?: Record<string, string>;
  logLevel?: string;
}

export function agentCommand(): Command {
  return new Command('agent')
    .description('run a runner node that connects to the control plane and runs jobs')
    .requiredOption('--url <url>', 'control plane URL, e.g. tcp://127.0.0.1:7420 (repeat for fallbacks)', collect)
    .addOption(new Option('--token <jwt>', 'registration token (muster token create --role node)').env('MUSTER_TOKEN'))
    .option('--work-dir <dir>', 'where job workspaces and unacked results are kept', './.muster-agent')
    .addOption(new Option('--codec <codec>', 'wire codec').choices(['json', 'msgpack']))
    .option('--tag <key=value>', 'node tag for job selectors (repeatable)', collectKeyValue)
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent')
    .action(async (options: AgentOptions) => runAgent(options));
}

async function runAgent(options: AgentOptions): Promise<void> {
  if (options.url === undefined || options.url.length === 0) throw new Error('give at least one --url');
  if (options.token === undefined || options.token === '') {
    throw new Error('no registration token: pass --token or set MUSTER_TOKEN (muster token create --role node)');
  }
  const { runAgentCommand } = await import('../agent/main.js');
  await runAgentCommand({
    urls: options.url,
    token: options.token,
    workDir: options.workDir,
    codec: options.codec,
    tags: options.tag ?? {},
    logLevel: options.logLevel,
  });
}
