// The other replicas' nodes as this replica's live feed (`GET /v1/events`, the visualizer) shows
// them: their views as last listed by their owners (node-directory.ts), kept current by the node
// events every replica publishes on the bus (state and owner), so a transition on any replica
// reaches this replica's page within one flush. A node that comes to this replica leaves the map.
import type { Logger } from 'pino';
import type { Bus, BusEvent } from '../bus/bus.js';
import type { NodeView } from '../admin/wire-types.js';

const DEAD_KEPT_MS = 5 * 60_000;

export class RemoteNodeViews {
  private readonly views = new Map<string, NodeView>();
  private readonly unsubscribe: () => void;

  constructor(
    bus: Bus,
    private readonly selfId: string,
    private readonly listCluster: () => Promise<NodeView[]>,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = bus.subscribe((event) => this.heard(event));
  }

  /** Reads every peer's nodes (the feed's first client, and after NATS comes back). */
  async refresh(): Promise<void> {
    try {
      for (const view of await this.listCluster()) {
        if (view.owner !== this.selfId) this.views.set(view.node_id, view);
      }
    } catch (err) {
      this.logger.warn({ err }, "could not list the other replicas' nodes for the live feed");
    }
  }

  /** The views, less dead nodes heard of more than `DEAD_KEPT_MS` ago (their owners forget them too). */
  list(): NodeView[] {
    const cutoff = Date.now() - DEAD_KEPT_MS;
    for (const [id, view] of this.views) {
      if (view.state === 'dead' && Date.parse(view.last_heartbeat) < cutoff) this.views.delete(id);
    }
    return [...this.views.values()];
  }

  get(nodeId: string): NodeView | undefined {
    return this.views.get(nodeId);
  }

  close(): void {
    this.unsubscribe();
  }

  private heard(event: BusEvent): void {
    if (event.kind !== 'node') return;
    if (event.owner === this.selfId) {
      this.views.delete(event.node_id);
      return;
    }
    const known = this.views.get(event.node_id);
    const view: NodeView = known ?? {
      node_id: event.node_id,
      hostname: '',
      state: event.state,
      connected: true,
      owner: event.owner,
      running_jobs: [],
      last_heartbeat: new Date().toISOString(),
      tags: {},
      transport: '',
      protocol_version: 1,
    };
    this.views.set(event.node_id, { ...view, state: event.state, owner: event.owner, connected: event.state !== 'dead', last_heartbeat: new Date().toISOString() });
  }
}
