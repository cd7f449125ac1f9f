// `muster agent`: runs a runner node that dials the control plane and runs its jobs.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import type { ClientTlsOptions } from '../transports/transport.js';
import { collect, collectKeyValue } from './options.js';

interface AgentOptions {
  url?: string[];
  token?: string;
  workDir: string;
  codec?: 'json' | 'msgpack';
  tag?: Record<string, string>;
  logLevel?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServername?: string;
  encryptKeyFile?: string;
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
    .option('--tls-ca <file>', 'CA bundle (PEM) the plane\'s certificate must chain to (tls://, wss://, grpcs://)')
    .option('--tls-cert <file>', 'client certificate (PEM) for mutual TLS')
    .option('--tls-key <file>', 'client key (PEM) for mutual TLS')
    .option('--tls-servername <name>', 'server name to verify when it differs from the URL host')
    .option('--encrypt-key-file <file>', "the plane's payload encryption key file (base64, 32 bytes): every frame is encrypted")
    .action(async (options: AgentOptions) => runAgent(options));
}

function clientTls(options: AgentOptions): ClientTlsOptions {
  const tls: ClientTlsOptions = {};
  if (options.tlsCa !== undefined) tls.ca = readFileSync(options.tlsCa, 'utf8');
  if (options.tlsCert !== undefined) tls.cert = readFileSync(options.tlsCert, 'utf8');
  if (options.tlsKey !== undefined) tls.key = readFileSync(options.tlsKey, 'utf8');
  if (options.tlsServername !== undefined) tls.servername = options.tlsServername;
  return tls;
}

async function runAgent(options: AgentOptions): Promise<void> {
  if (options.url === undefined || options.url.length === 0) throw new Error('give at least one --url');
  if (options.token === undefined || options.token === '') {
    throw new Error('no registration token: pass --token or set MUSTER_TOKEN (muster token create --role node)');
  }
  const { runAgentCommand } = await import('../agent/main.js');
  const { loadEncryptionKey } = await import('../transports/payload-cipher.js');
  const encryption = options.encryptKeyFile === undefined ? {} : { encryptionKey: loadEncryptionKey(options.encryptKeyFile) };
  await runAgentCommand({
    urls: options.url,
    token: options.token,
    workDir: options.workDir,
    codec: options.codec,
    tags: options.tag ?? {},
    logLevel: options.logLevel,
    agent: { tls: clientTls(options), ...encryption },
  });
}
