// `muster token create | list | revoke`: tokens, always recorded by `jti` where the plane keeps them.
// With `--api` / MUSTER_API, through a running plane's admin API (admin role); without, offline on
// the data directory: minted with its secret and recorded in its store (first set-up, no plane
// running). A plane on the same data directory picks offline revocations up within seconds.
import { Command, Option } from 'commander';
import { loadConfig, type Config } from '../supervisor/config.js';
import type { Revocation, TokenRecord } from '../supervisor/admin/wire-types.js';
import { loadSecret } from '../supervisor/tokens/secret.js';
import { openTokenStore } from '../supervisor/store/open-stores.js';
import type { TokenStore } from '../supervisor/store/token-store.js';
import type { MintAnswer } from '../supervisor/admin/wire-types.js';
import { TokenAuthority, type ApiRole } from '../supervisor/tokens/tokens.js';
import { parseTtl } from '../supervisor/tokens/ttl.js';
import { createApiClient, type ApiClient } from './api-client.js';

type TokenRole = 'node' | ApiRole;

/** Where the tokens are: a plane's API when `api` is set, else the data directory. */
interface WhereOptions {
  api?: string;
  token?: string;
  dataDir?: string;
  config?: string;
}

interface CreateOptions extends WhereOptions {
  role: TokenRole;
  ttl: string;
  sub?: string;
  nodeType?: string;
}

interface ListOptions extends WhereOptions {
  json?: boolean;
}

interface RevokeOptions extends WhereOptions {
  reason?: string;
}

const HEADERS = ['JTI', 'ROLE', 'SUBJECT', 'EXPIRES', 'STATUS'];

export function tokenCommand(): Command {
  const token = new Command('token').description('mint, list and revoke tokens');
  withWhere(token.command('create'))
    .description('print a new JWT (a node registration token or an admin API token) and record it')
    .addOption(
      new Option('--role <role>', 'node (registration) or an API role')
        .choices(['node', 'viewer', 'operator', 'admin'])
        .makeOptionMandatory(),
    )
    .option('--ttl <duration>', 'lifetime: 90s, 30m, 1h, 2d', '1h')
    .option('--sub <subject>', 'node: the only hostname allowed to use it; API: who it is for')
    .option('--node-type <type>', 'node: the only node type allowed to use it')
    .action(async (options: CreateOptions) => {
      process.stdout.write(`${await createToken(options)}\n`);
    });
  withWhere(token.command('list'))
    .description('list minted tokens by jti, role, subject and expiry (never the tokens themselves)')
    .option('--json', 'print JSON instead of a table')
    .action(async (options: ListOptions) => {
      const tokens = await listTokens(options);
      process.stdout.write(options.json === true ? `${JSON.stringify(tokens, null, 2)}\n` : tokensTable(tokens, new Date()));
    });
  withWhere(token.command('revoke'))
    .description('revoke a token by its jti: nodes standing on it are disconnected, the API refuses it')
    .argument('<jti>', 'the id of the token (see `muster token list`)')
    .option('--reason <text>', 'why, for the record')
    .action(async (jti: string, options: RevokeOptions) => {
      // A mistyped jti would otherwise be "revoked" silently while the real token goes on working.
      const minted = (await listTokens(options)).some((t) => t.jti === jti);
      const revocation = await revokeToken(jti, options);
      process.stdout.write(`revoked ${revocation.jti} at ${revocation.revoked_at}\n`);
      if (!minted) {
        process.stderr.write(
          `muster: warning: this plane has no record of minting ${jti} (see muster token list); it was revoked by id only: a token with that jti will be refused\n`,
        );
      }
    });
  return token;
}

function withWhere(command: Command): Command {
  return command
    .addOption(new Option('--api <url>', "a running plane's admin API (default: offline, on the data directory)").env('MUSTER_API'))
    .addOption(new Option('--token <jwt>', 'admin API token for --api (default: minted from the local secret)').env('MUSTER_TOKEN'))
    .option('--data-dir <dir>', 'the data directory: its secret and its store (default ./.muster)')
    .option('--config <file>', 'JSON configuration file (also MUSTER_CONFIG)');
}

async function createToken(options: CreateOptions): Promise<string> {
  const ttlSeconds = parseTtl(options.ttl);
  if (options.nodeType !== undefined && options.role !== 'node') {
    throw new Error('--node-type only applies to --role node');
  }
  const client = await apiClient(options);
  if (client !== undefined) {
    const body: Record<string, unknown> = { role: options.role, ttl_seconds: ttlSeconds };
    if (options.sub !== undefined) body.sub = options.sub;
    if (options.nodeType !== undefined) body.node_type = options.nodeType;
    return (await client.post<MintAnswer>('/v1/tokens', body)).token;
  }
  const config = configOf(options);
  const minted = await new TokenAuthority(loadSecret(config)).mint({
    role: options.role,
    ttlSeconds,
    ...(options.sub === undefined ? {} : { sub: options.sub }),
    ...(options.nodeType === undefined ? {} : { nodeType: options.nodeType }),
  });
  await withStore(config, true, (store) => store.recordToken(minted.info));
  return minted.token;
}

async function listTokens(options: ListOptions): Promise<TokenRecord[]> {
  const client = await apiClient(options);
  if (client !== undefined) return client.get<TokenRecord[]>('/v1/tokens');
  return withStore(configOf(options), false, (store) => store.listTokens());
}

async function revokeToken(jti: string, options: RevokeOptions): Promise<Revocation> {
  const reason = options.reason ?? 'revoked with muster token revoke';
  const client = await apiClient(options);
  if (client !== undefined) return client.post<Revocation>(`/v1/tokens/${encodeURIComponent(jti)}/revoke`, { reason });
  return withStore(configOf(options), false, (store) => store.revokeToken(jti, reason));
}

async function apiClient(options: WhereOptions): Promise<ApiClient | undefined> {
  if (options.api === undefined || options.api === '') return undefined;
  return createApiClient({ api: options.api, token: options.token, dataDir: options.dataDir });
}

function configOf(options: WhereOptions): Config {
  return loadConfig({ file: options.config, overrides: { dataDir: options.dataDir } });
}

/** Runs `fn` on the data directory's store; `create` allows making it (first set-up), else it must exist. */
async function withStore<T>(config: Config, create: boolean, fn: (store: TokenStore) => Promise<T>): Promise<T> {
  const store = openTokenStore(config, create);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** A plain-text table, one token a line; columns padded to their widest cell. */
export function tokensTable(tokens: TokenRecord[], now: Date): string {
  if (tokens.length === 0) return 'no tokens\n';
  const rows = tokens.map((t) => [t.jti, t.role, t.sub ?? '-', t.expires_at, statusOf(t, now)]);
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[HEADERS, ...rows].map(line).join('\n')}\n`;
}

function statusOf(token: TokenRecord, now: Date): string {
  if (token.revoked_at !== undefined) return 'revoked';
  return Date.parse(token.expires_at) <= now.getTime() ? 'expired' : 'active';
}
