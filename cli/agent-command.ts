// `muster agent`: runs a runner node that dials the control plane and runs its jobs.
// Settings come from flags, then MUSTER_AGENT_* variables, then a JSON config file
// (`--config` / MUSTER_AGENT_CONFIG, keys as in AgentFileSettings). The registration token has
// its own variable, MUSTER_AGENT_TOKEN: an operator's MUSTER_TOKEN is for the admin API.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { DEFAULT_JOB_TYPE, DEFAULT_RUNNER_TYPE } from '../agent/host-facts.js';
import { readJsonFile } from '../supervisor/json-file.js';
import type { ClientTlsOptions } from '../transports/transport.js';
import { collect, collectKeyValue, parseHostPort } from './options.js';
import { checkAgentToken } from './token-kind.js';

/** The agent's settings, as flags and as the keys of its config file. */
interface AgentSettings {
  url?: string[];
  token?: string;
  name?: string;
  workDir?: string;
  codec?: 'json' | 'msgpack';
  tag?: Record<string, string>;
  runnerType?: string[];
  jobType?: string[];
  logLevel?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServername?: string;
  encryptKeyFile?: string;
  metrics?: string;
}

interface AgentFlags extends AgentSettings {
  config?: string;
}

const DEFAULT_WORK_DIR = './.muster-agent';
/** Selector keys that match a node's capabilities, not its tags (supervisor/jobs/job-matcher.ts), and the flag that sets each. */
const CAPABILITY_KEYS: Record<string, string> = { runner_type: '--runner-type', job_type: '--job-type' };
/** The node tag that `--name` sets; the plane shows it as the node's `name`. */
export const NAME_TAG = 'name';

/** Config file keys: the flags' names in camelCase; `url` may be one string, `tag` is `tags`, `runnerType` and `jobType` are `runnerTypes` and `jobTypes`. */
const FILE_KEYS: Record<string, 'string' | 'strings' | 'map'> = {
  url: 'strings',
  token: 'string',
  name: 'string',
  workDir: 'string',
  codec: 'string',
  tags: 'map',
  runnerTypes: 'strings',
  jobTypes: 'strings',
  logLevel: 'string',
  tlsCa: 'string',
  tlsCert: 'string',
  tlsKey: 'string',
  tlsServername: 'string',
  encryptKeyFile: 'string',
  metrics: 'string',
};

export function agentCommand(): Command {
  return new Command('agent')
    .description('run a runner node that connects to the control plane and runs jobs')
    .addOption(
      new Option('--url <url>', 'control plane URL, e.g. tcp://127.0.0.1:7420 (repeat for fallbacks; MUSTER_AGENT_URL: comma-separated)')
        .env('MUSTER_AGENT_URL')
        .argParser(collectUrls),
    )
    .addOption(new Option('--token <jwt>', 'node registration token (muster token create --role node)').env('MUSTER_AGENT_TOKEN'))
    .addOption(new Option('--name <name>', 'node name shown by muster nodes and the API (the node tag name=NAME)').env('MUSTER_AGENT_NAME'))
    .addOption(new Option('--config <file>', 'JSON file with any of these settings, keys in camelCase (url, token, name, workDir, tags, ...)').env('MUSTER_AGENT_CONFIG'))
    .addOption(new Option('--work-dir <dir>', `where job workspaces and unacked results are kept (default ${DEFAULT_WORK_DIR})`).env('MUSTER_AGENT_WORK_DIR'))
    .addOption(new Option('--codec <codec>', 'wire codec (default msgpack)').choices(['json', 'msgpack']))
    .option('--tag <key=value>', 'node tag for job selectors (repeatable)', collectKeyValue)
    .option('--runner-type <type>', `a runner type this node offers, what a job's selector runner_type= matches (repeatable; default ${DEFAULT_RUNNER_TYPE})`, collect)
    .option('--job-type <type>', `a job type this node supports, what a job's selector job_type= matches (repeatable; default ${DEFAULT_JOB_TYPE})`, collect)
    .addOption(new Option('--log-level <level>', 'trace, debug, info, warn, error or silent (default info)').env('MUSTER_LOG_LEVEL'))
    .option('--tls-ca <file>', 'CA bundle (PEM) the plane\'s certificate must chain to (tls://, wss://, grpcs://)')
    .option('--tls-cert <file>', 'client certificate (PEM) for mutual TLS')
    .option('--tls-key <file>', 'client key (PEM) for mutual TLS')
    .option('--tls-servername <name>', 'server name to verify when it differs from the URL host')
    .option('--encrypt-key-file <file>', "the plane's payload encryption key file (base64, 32 bytes): every frame is encrypted")
    .addOption(new Option('--metrics <host:port>', "serve the agent's Prometheus metrics at http://HOST:PORT/metrics (default off)").env('MUSTER_AGENT_METRICS'))
    .action(async (flags: AgentFlags) => runAgent(withFile(flags)));
}

/** `--url` repeated, or MUSTER_AGENT_URL with commas. */
function collectUrls(value: string, previous: string[] = []): string[] {
  return value.split(',').reduce((urls, url) => (url.trim() === '' ? urls : collect(url.trim(), urls)), previous);
}

/** The flags (and variables) over the config file's settings; tags are merged key by key. */
function withFile(flags: AgentFlags): AgentSettings {
  const { config, ...given } = flags;
  if (config === undefined || config === '') return given;
  const file = readAgentFile(config);
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as AgentSettings;
  return { ...file, ...defined, tag: { ...file.tag, ...given.tag } };
}

function readAgentFile(path: string): AgentSettings {
  const parsed = readJsonFile(path);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`config file ${path} is not a JSON object`);
  const settings: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    const kind = FILE_KEYS[key];
    if (kind === undefined) throw new Error(`config file ${path}: unknown setting ${key} (known: ${Object.keys(FILE_KEYS).join(', ')})`);
    const ok =
      kind === 'string'
        ? typeof value === 'string'
        : kind === 'strings'
          ? typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))
          : typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string');
    if (!ok) throw new Error(`config file ${path}: ${key} must be ${kind === 'map' ? 'an object of strings' : kind === 'strings' ? 'a string or a list of strings' : 'a string'}`);
    const list = typeof value === 'string' ? [value] : value;
    if (key === 'url') settings.url = list;
    else if (key === 'tags') settings.tag = value;
    else if (key === 'runnerTypes') settings.runnerType = list;
    else if (key === 'jobTypes') settings.jobType = list;
    else settings[key] = value;
  }
  if (settings.codec !== undefined && settings.codec !== 'json' && settings.codec !== 'msgpack') {
    throw new Error(`config file ${path}: codec must be json or msgpack`);
  }
  return settings as AgentSettings;
}

function clientTls(options: AgentSettings): ClientTlsOptions {
  const tls: ClientTlsOptions = {};
  if (options.tlsCa !== undefined) tls.ca = readFileSync(options.tlsCa, 'utf8');
  if (options.tlsCert !== undefined) tls.cert = readFileSync(options.tlsCert, 'utf8');
  if (options.tlsKey !== undefined) tls.key = readFileSync(options.tlsKey, 'utf8');
  if (options.tlsServername !== undefined) tls.servername = options.tlsServername;
  return tls;
}

/**
 * The node tags: `--tag`s plus `--name` as the `name` tag. A tag named as a capability would
 * never be matched by `--selector runner_type=...`, which asks for a runner type: refused, with
 * the flag that sets it.
 */
function tagsOf(options: AgentSettings): Record<string, string> {
  const tags = { ...options.tag };
  for (const [key, flag] of Object.entries(CAPABILITY_KEYS)) {
    const value = tags[key];
    if (value !== undefined) {
      throw new Error(`--tag ${key}=${value}: a job's selector ${key}= matches what the node offers, not its tags: use ${flag} ${value}`);
    }
  }
  if (options.name === undefined || options.name === '') return tags;
  const tagged = tags[NAME_TAG];
  if (tagged !== undefined && tagged !== options.name) {
    throw new Error(`--name ${options.name} and --tag ${NAME_TAG}=${tagged} disagree: the name is the ${NAME_TAG} tag`);
  }
  return { ...tags, [NAME_TAG]: options.name };
}

async function runAgent(options: AgentSettings): Promise<void> {
  if (options.url === undefined || options.url.length === 0) {
    throw new Error('no control plane URL: pass --url (e.g. tcp://127.0.0.1:7420), set MUSTER_AGENT_URL, or give url in --config');
  }
  if (options.token === undefined || options.token === '') {
    throw new Error('no registration token: pass --token or set MUSTER_AGENT_TOKEN (muster token create --role node)');
  }
  checkAgentToken(options.token);
  const tags = tagsOf(options);
  const { runAgentCommand } = await import('../agent/main.js');
  const { loadEncryptionKey } = await import('../transports/payload-cipher.js');
  const encryption = options.encryptKeyFile === undefined ? {} : { encryptionKey: loadEncryptionKey(options.encryptKeyFile) };
  await runAgentCommand({
    urls: options.url,
    token: options.token,
    workDir: options.workDir ?? DEFAULT_WORK_DIR,
    codec: options.codec,
    tags,
    logLevel: options.logLevel,
    ...(options.metrics === undefined || options.metrics === '' ? {} : { metrics: parseHostPort(options.metrics) }),
    agent: {
      tls: clientTls(options),
      ...encryption,
      ...(options.runnerType === undefined ? {} : { runnerTypes: options.runnerType }),
      ...(options.jobType === undefined ? {} : { supportedJobTypes: options.jobType }),
    },
  });
}
