// `muster cluster`: the replicas of the control plane (one, for the embedded plane), how many
// nodes each serves, the version and cluster format each runs (replicas of different formats
// must not share a cluster), when each last renewed its lease, and the NATS connection.
import { Command } from 'commander';
import type { ClusterView } from '../supervisor/admin/wire-types.js';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';
import { terminalText } from './terminal-text.js';

const HEADERS = ['REPLICA', 'NODES', 'VERSION', 'FORMAT', 'STARTED', 'LAST RENEWAL'];

export function clusterCommand(): Command {
  return withClientOptions(new Command('cluster'))
    .description('list the control-plane replicas, their nodes, versions and lease renewals, and the NATS connection')
    .option('--json', 'print the API answer (GET /v1/cluster)')
    .action(async (options: ClientOptions & { json?: boolean }) => {
      const client = await createApiClient(options);
      const view = await client.get<ClusterView>('/v1/cluster');
      process.stdout.write(options.json === true ? `${JSON.stringify(view, null, 2)}\n` : clusterTable(view));
    });
}

/** The replicas as a table, then the mode and the NATS connection on one line. */
export function clusterTable(view: ClusterView): string {
  const rows = view.replicas.map((r) =>
    [r.control_plane_id, String(r.nodes), r.version === '' ? '-' : r.version, r.cluster_format === null ? '-' : String(r.cluster_format), r.started_at, r.last_renewal ?? '-'].map(terminalText),
  );
  const widths = HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  const nats = view.nats === null ? 'no NATS (embedded plane)' : `NATS ${view.nats.state}${view.nats.server === undefined ? '' : ` to ${view.nats.server}`}, ${view.nats.reconnects} reconnects`;
  return `${[HEADERS, ...rows].map(line).join('\n')}\n${view.mode}: ${terminalText(nats)}\n`;
}
