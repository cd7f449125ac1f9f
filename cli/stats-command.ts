// `muster stats`: the plane's health and counters at a glance: its readiness (`/readyz`, with
// the reason when it is not ready) and `GET /v1/stats` (connections, messages, nodes by
// state, queued jobs by priority, jobs by state), as aligned lines or JSON.
import { Command } from 'commander';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';
import { terminalText } from './terminal-text.js';

interface StatsOptions extends ClientOptions {
  json?: boolean;
}

/** What `/readyz` answers. */
export interface Readiness {
  status: string;
  reason?: string;
}

export function statsCommand(): Command {
  return withClientOptions(new Command('stats'))
    .description("the plane's readiness and counters (exit status 1 when it is not ready)")
    .option('--json', 'print {"readyz": ..., "stats": ...} instead of lines')
    .action(async (options: StatsOptions) => {
      const client = await createApiClient(options);
      const stats = await client.get<Record<string, number>>('/v1/stats');
      const health = await readiness(options.api);
      process.stdout.write(options.json === true ? `${JSON.stringify({ readyz: health, stats }, null, 2)}\n` : statsText(health, stats));
      if (health.status !== 'ready') process.exitCode = 1;
    });
}

async function readiness(api: string): Promise<Readiness> {
  const res = await fetch(new URL('/readyz', api));
  return (await res.json()) as Readiness;
}

/** `status: ready` (or `not_ready: <reason>`), then one `name  value` line per counter, names padded. */
export function statsText(readiness: Readiness, stats: Record<string, number>): string {
  const status = readiness.reason === undefined ? readiness.status : `${readiness.status}: ${readiness.reason}`;
  const entries = Object.entries(stats);
  const width = Math.max(0, ...entries.map(([name]) => name.length));
  // The answer comes from the network: escaped, like every such text.
  const lines = [`status: ${terminalText(status)}`, ...entries.map(([name, value]) => `${terminalText(name).padEnd(width)}  ${String(value)}`)];
  return `${lines.join('\n')}\n`;
}
