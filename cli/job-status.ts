// What a job is doing, in one line an operator reads at a glance: `queued: no ready node
// matches runner_type=macos`, `queued: 3 matching nodes, all full`, `running on node <id>
// (<hostname>)`. Shared by `job submit --wait` (printed as it changes) and `job get`.
import type { JobAnswer, JobSelector, NodeView } from '../supervisor/admin/wire-types.js';
import type { ApiClient } from './api-client.js';

/** `runner_type=macos, os=linux`: the selector as it was typed. */
export function describeSelector(selector: JobSelector | undefined): string {
  const pairs: string[] = [];
  if (selector?.runner_type !== undefined) pairs.push(`runner_type=${selector.runner_type}`);
  if (selector?.job_type !== undefined) pairs.push(`job_type=${selector.job_type}`);
  for (const [key, value] of Object.entries(selector?.tags ?? {})) pairs.push(`${key}=${value}`);
  return pairs.join(', ');
}

/**
 * Why a queued job waits, from the answer's `waiting_for` (a reason name, or an object with
 * `reason` and details such as `matching_nodes` or `until`); undefined when the plane says
 * nothing.
 */
export function describeWaitingFor(job: JobAnswer): string | undefined {
  const waiting: unknown = job.waiting_for;
  if (waiting === undefined || waiting === null) return undefined;
  const detail = typeof waiting === 'object' ? (waiting as Record<string, unknown>) : {};
  const reason = typeof waiting === 'string' ? waiting : String(detail.reason ?? '');
  const selector = describeSelector(job.selector);
  switch (reason) {
    case 'no_matching_node':
      return selector === '' ? 'no ready node' : `no ready node matches ${selector}`;
    case 'matching_nodes_full': {
      const count = detail.matching_nodes ?? detail.nodes ?? detail.count;
      if (typeof count !== 'number') return 'every matching node is full';
      return count === 1 ? 'the one matching node is full' : `${count} matching nodes, all full`;
    }
    case 'retry_backoff': {
      const until = detail.until ?? detail.retry_at ?? detail.not_before;
      return typeof until === 'string' ? `waiting to retry (attempt ${job.attempt}) until ${until}` : `waiting to retry (attempt ${job.attempt})`;
    }
    default:
      return reason === '' ? undefined : reason.replaceAll('_', ' ');
  }
}

/** The node's hostname by id, asked once per node; undefined when the plane does not say. */
export class NodeNames {
  readonly #known = new Map<string, string | undefined>();

  constructor(private readonly client: ApiClient) {}

  async hostname(nodeId: string): Promise<string | undefined> {
    if (this.#known.has(nodeId)) return this.#known.get(nodeId);
    let name: string | undefined;
    try {
      const node = await this.client.get<NodeView>(`/v1/nodes/${encodeURIComponent(nodeId)}`);
      name = node.name !== undefined && node.name !== '' ? node.name : node.hostname;
    } catch {
      // Gone from the registry (or an older plane without the route): the id alone will do.
      name = undefined;
    }
    this.#known.set(nodeId, name);
    return name;
  }
}

/** One line for where the job is now. */
export async function describeJob(job: JobAnswer, names: NodeNames): Promise<string> {
  switch (job.state) {
    case 'Queued': {
      const why = describeWaitingFor(job);
      if (why !== undefined) return `queued: ${why}`;
      // A plane that does not say why: what the job needs is still worth showing.
      const selector = describeSelector(job.selector);
      return selector === '' ? 'queued: waiting for a ready node' : `queued: waiting for a ready node matching ${selector}`;
    }
    case 'Assigned':
    case 'Running': {
      const verb = job.state === 'Assigned' ? 'assigned to' : 'running on';
      if (job.node_id === undefined) return job.state.toLowerCase();
      const host = await names.hostname(job.node_id);
      return `${verb} node ${job.node_id}${host === undefined ? '' : ` (${host})`}`;
    }
    default:
      return job.reason === undefined ? job.state : `${job.state}: ${job.reason}`;
  }
}
