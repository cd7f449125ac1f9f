// What a job is doing, in one line an operator reads at a glance: `queued: no ready node
// matches runner_type=macos`, `queued: every node matching runner_type=macos is full`, `running on node <id>
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

/** Why a queued job waits, from the answer's `waiting_for`; undefined when the plane says nothing. */
export function describeWaitingFor(job: JobAnswer): string | undefined {
  const selector = describeSelector(job.selector);
  switch (job.waiting_for) {
    case undefined:
      return undefined;
    case 'no_matching_node':
      return selector === '' ? 'no ready node' : `no ready node matches ${selector}`;
    case 'matching_nodes_full':
      return selector === '' ? 'every node is full' : `every node matching ${selector} is full`;
    case 'retry_backoff':
      return `waiting to retry (attempt ${job.attempt})`;
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
