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
  /** The last node event heard of each node since its view was last brought up to date. */
  private readonly heard = new Map<string, { state: NodeView['state']; owner: string; at: number }>();
  private readonly unsubscribe: () => void;

  constructor(
    bus: Bus,
    private readonly selfId: string,
    private readonly listCluster: () => Promise<NodeView[]>,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = bus.subscribe((event) => this.onEvent(event));
  }

  /** Reads every peer's nodes (the feed's first client, and after NATS comes back). */
  async refresh(): Promise<void> {
    try {
      for (const view of await this.listCluster()) {
        if (view.owner !== this.selfId) {
          this.views.set(view.node_id, view);
          this.heard.delete(view.node_id);
        }
      }
    } catch (err) {
      this.logger.warn({ err }, "could not list the other replicas' nodes for the live feed");
    }
  }

  /** The views, less dead nodes heard of more than `DEAD_KEPT_MS` ago (their owners forget them too). */
  list(): NodeView[] {
    const cutoff = Date.now() - DEAD_KEPT_MS;
    for (const [id, view] of this.views) {
      if (view.state === 'dead' && this.#heardAt(id, view) < cutoff) this.views.delete(id);
    }
    return [...this.views.keys()].map((id) => this.get(id)!);
  }

  get(nodeId: string): NodeView | undefined {
    const view = this.views.get(nodeId);
    if (view === undefined) return undefined;
    const heard = this.heard.get(nodeId);
    if (heard === undefined) return view;
    // Made once per node event heard since the last look, not once per event.
    const current = { ...view, state: heard.state, owner: heard.owner, connected: heard.state !== 'dead', last_heartbeat: new Date(heard.at).toISOString() };
    this.views.set(nodeId, current);
    this.heard.delete(nodeId);
    return current;
  }

  #heardAt(nodeId: string, view: NodeView): number {
    return this.heard.get(nodeId)?.at ?? Date.parse(view.last_heartbeat);
  }

  close(): void {
    this.unsubscribe();
  }

  private onEvent(event: BusEvent): void {
    if (event.kind !== 'node') return;
    if (event.owner === this.selfId) {
      this.views.delete(event.node_id);
      this.heard.delete(event.node_id);
      return;
    }
    if (!this.views.has(event.node_id)) {
      this.views.set(event.node_id, {
        node_id: event.node_id,
        hostname: '',
        state: event.state,
        connected: true,
        owner: event.owner,
        running_jobs: [],
        last_heartbeat: '',
        tags: {},
        transport: '',
        protocol_version: 1,
      });
    }
    // Every job moves its node twice (busy, ready) and each replica hears every other's: only
    // noted here, the view is brought up to date when it is read (`get`).
    this.heard.set(event.node_id, { state: event.state, owner: event.owner, at: Date.now() });
  }
}
