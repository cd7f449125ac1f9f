// `muster nodes`: the fleet as a table (or JSON) from the admin HTTP API. Dead nodes, which
// the plane keeps listing for `deadNodeRetentionMs`, are left out unless `--all` is given.
import { Command } from 'commander';
import type { NodeView } from '../supervisor/admin/wire-types.js';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';
import { terminalText } from './terminal-text.js';

interface NodesOptions extends ClientOptions {
  json?: boolean;
  all?: boolean;
}

const HEADERS = ['NODE ID', 'NAME', 'HOSTNAME', 'STATE', 'JOBS', 'TAGS', 'TRANSPORT', 'PROTO', 'OWNER', 'LAST HEARTBEAT'];

export function nodesCommand(): Command {
  return withClientOptions(new Command('nodes'))
    .description('list the nodes the control plane knows (dead ones only with --all)')
    .option('--all', 'also the dead nodes the plane still remembers')
    .option('--json', 'print the JSON answer instead of a table')
    .action(async (options: NodesOptions) => {
      const client = await createApiClient(options);
      const all = await client.get<NodeView[]>('/v1/nodes');
      const nodes = options.all === true ? all : all.filter((n) => n.state !== 'dead');
      process.stdout.write(options.json === true ? `${JSON.stringify(nodes, null, 2)}\n` : nodesTable(nodes, new Date(), all.length - nodes.length));
    });
}

/** A plain-text table, one node a line; columns padded to their widest cell. */
export function nodesTable(nodes: NodeView[], now: Date, hiddenDead = 0): string {
  const hidden = hiddenDead > 0 ? `(${hiddenDead} dead node${hiddenDead === 1 ? '' : 's'} not shown: --all)\n` : '';
  if (nodes.length === 0) return `no nodes\n${hidden}`;
  // Every cell comes from the network: escaped, so that none can act on the terminal or forge a row.
  const rows = nodes.map((n) => [
    n.node_id,
    n.name ?? '-',
    n.hostname,
    stateOf(n, now),
    String(n.running_jobs.length),
    tagsOf(n),
    n.transport === undefined || n.transport === '' ? '-' : n.transport,
    n.protocol_version === undefined ? '-' : String(n.protocol_version),
    n.owner,
    age(n.last_heartbeat, now),
  ].map(terminalText));
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return `${[HEADERS, ...rows].map(line).join('\n')}\n${hidden}`;
}

/** The state, with what keeps a live node from jobs: a lost connection, or a bench (until when, and why). */
function stateOf(node: NodeView, now: Date): string {
  if (node.state === 'dead') return node.state;
  if (node.connected === false) return `${node.state} (disconnected)`;
  if (node.benched_until !== undefined) return `${node.state} (benched ${until(node.benched_until, now)}: ${node.benched_reason ?? '?'})`;
  return node.state;
}

function until(iso: string, now: Date): string {
  const seconds = Math.max(0, Math.round((Date.parse(iso) - now.getTime()) / 1000));
  return Number.isFinite(seconds) ? `for ${seconds}s more` : 'for a while';
}

function tagsOf(node: NodeView): string {
  const pairs = Object.entries(node.tags ?? {}).map(([k, v]) => `${k}=${v}`);
  return pairs.length === 0 ? '-' : pairs.join(',');
}

function age(iso: string, now: Date): string {
  const seconds = Math.round((now.getTime() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return 'unknown';
  if (seconds < 120) return `${Math.max(0, seconds)}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}
