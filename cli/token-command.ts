// `muster token create`: mints a JWT with the local secret (the one `muster serve` uses):
// a node registration token, or an admin API token of a role.
import { Command, Option } from 'commander';
import { loadConfig } from '../supervisor/config.js';
import { loadSecret } from '../supervisor/secret.js';
import { TokenAuthority, type ApiRole } from '../supervisor/tokens.js';
import { parseTtl } from '../supervisor/ttl.js';

type TokenRole = 'node' | ApiRole;

interface CreateOptions {
  role: TokenRole;
  ttl: string;
  sub?: string;
  nodeType?: string;
  dataDir?: string;
  config?: string;
}

export function tokenCommand(): Command {
  const token = new Command('token').description('mint tokens with the local secret');
  token
    .command('create')
    .description('print a new JWT: a node registration token or an admin API token')
    .addOption(
      new Option('--role <role>', 'node (registration) or an API role')
        .choices(['node', 'viewer', 'operator', 'admin'])
        .makeOptionMandatory(),
    )
    .option('--ttl <duration>', 'lifetime: 90s, 30m, 1h, 2d', '1h')
    .option('--sub <subject>', 'node: the only hostname allowed to use it; API: who it is for')
    .option('--node-type <type>', 'node: the only node type allowed to use it')
    .option('--data-dir <dir>', 'where the secret is kept (default ./.muster; created when missing)')
    .option('--config <file>', 'JSON configuration file (also MUSTER_CONFIG)')
    .action(async (options: CreateOptions) => {
      process.stdout.write(`${await createToken(options)}\n`);
    });
  return token;
}

async function createToken(options: CreateOptions): Promise<string> {
  const ttlSeconds = parseTtl(options.ttl);
  if (options.nodeType !== undefined && options.role !== 'node') {
    throw new Error('--node-type only applies to --role node');
  }
  const config = loadConfig({ file: options.config, overrides: { dataDir: options.dataDir } });
  const authority = new TokenAuthority(loadSecret(config));
  if (options.role === 'node') {
    return authority.mintRegistrationToken({ ttlSeconds, sub: options.sub, nodeType: options.nodeType });
  }
  return authority.mintApiToken({ role: options.role, ttlSeconds, sub: options.sub });
}
