// `muster nodes`: the fleet as a table (or JSON) from the admin HTTP API.
import { Command } from 'commander';
import type { NodeView } from '../supervisor/admin/wire-types.js';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';
import { terminalText } from './terminal-text.js';

interface NodesOptions extends ClientOptions {
  json?: boolean;
}

const HEADERS = ['NODE ID', 'HOSTNAME', 'STATE', 'JOBS', 'LAST HEARTBEAT'];

export function nodesCommand(): Command {
  return withClientOptions(new Command('nodes'))
    .description('list the nodes the control plane knows')
    .option('--json', 'print the JSON answer instead of a table')
    .action(async (options: NodesOptions) => {
      const client = await createApiClient(options);
      const nodes = await client.get<NodeView[]>('/v1/nodes');
      process.stdout.write(options.json === true ? `${JSON.stringify(nodes, null, 2)}\n` : nodesTable(nodes, new Date()));
    });
}

/** A plain-text table, one node a line; columns padded to their widest cell. */
export function nodesTable(nodes: NodeView[], now: Date): string {
  if (nodes.length === 0) return 'no nodes\n';
  // Every cell comes from the network: escaped, so that none can act on the terminal or forge a row.
  const rows = nodes.map((n) =>
    [n.node_id, n.hostname, n.state, String(n.running_jobs.length), `${n.last_heartbeat} (${age(n.last_heartbeat, now)})`].map(terminalText),
  );
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[HEADERS, ...rows].map(line).join('\n')}\n`;
}

function age(iso: string, now: Date): string {
  const seconds = Math.round((now.getTime() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return 'unknown';
  if (seconds < 120) return `${Math.max(0, seconds)}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}
