// The fleet as the live feed last told it: one map of nodes and the queue counts, shared by the views.

/**
 * @typedef {{node_id: string, hostname: string, name?: string, state: string, connected: boolean, owner: string,
 *   running_jobs: string[], last_heartbeat: string, tags: Record<string, string>, transport: string}} FleetNode
 * @typedef {{snapshot: boolean, nodes: string[], jobs: Array<{job_id: string, state: string, attempt: number, node_id?: string}>, queue: boolean}} Change
 */

export const fleet = {
  /** @type {Map<string, FleetNode>} */
  nodes: new Map(),
  /** @type {Record<string, number>} */
  queue: { Critical: 0, High: 0, Normal: 0, Low: 0 },
  seq: 0,
};
