// `muster ui`: prints a ready link to the live visualizer (`/ui`) with a token in the URL's
// fragment (`#token=...`: browsers never send a fragment to a server, so the token is in no
// access log). With `--token` that token goes in the link; without, a viewer token (or
// `--role operator`, to drain from the page) is minted through the plane's API, so it is
// recorded there and can be revoked like any other (`muster token list`, `revoke`).
import { Command, Option } from 'commander';
import type { MintAnswer } from '../supervisor/admin/wire-types.js';
import { parseTtl } from '../supervisor/tokens/ttl.js';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';
import { checkApiToken } from './token-kind.js';

interface UiOptions extends ClientOptions {
  role: 'viewer' | 'operator';
  ttl: string;
}

export function uiCommand(): Command {
  return withClientOptions(new Command('ui'))
    .description('print a link to the live visualizer, with a viewer token minted for it (or --token)')
    .addOption(new Option('--role <role>', 'the role of the minted token (operator: drain from the page)').choices(['viewer', 'operator']).default('viewer'))
    .option('--ttl <duration>', 'lifetime of the minted token: 90s, 30m, 8h, 2d', '8h')
    .action(async (options: UiOptions) => {
      process.stdout.write(`${await uiLink(options)}\n`);
    });
}

/** The link: `<api>/ui/#token=<token>`. */
export async function uiLink(options: UiOptions): Promise<string> {
  const base = options.api.replace(/\/+$/, '');
  if (options.token !== undefined && options.token !== '') {
    checkApiToken(options.token);
    return `${base}/ui/#token=${encodeURIComponent(options.token)}`;
  }
  const client = await createApiClient(options);
  const minted = await client.post<MintAnswer>('/v1/tokens', { role: options.role, ttl_seconds: parseTtl(options.ttl), sub: 'muster-ui' });
  return `${base}/ui/#token=${encodeURIComponent(minted.token)}`;
}
