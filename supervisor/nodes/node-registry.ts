// Which session holds which node: at most one live session per node id (PROTOCOL.md 4.7),
// plus a short memory of dead nodes so that operators see them go.
import type { NodeSession } from './node-session.js';
import type { NodeView } from '../admin/wire-types.js';

const DEAD_NODES_KEPT_MS = 5 * 60_000;

export class NodeRegistry {
  private readonly sessions = new Map<string, NodeSession>();
  private readonly dead = new Map<string, { view: NodeView; until: number }>();

  constructor(private readonly owner: string) {}

  /** Binds `nodeId` to `session`; returns the session it replaces, if any. */
  bind(nodeId: string, session: NodeSession): NodeSession | undefined {
    const previous = this.sessions.get(nodeId);
    this.sessions.set(nodeId, session);
    this.dead.delete(nodeId);
    return previous === session ? undefined : previous;
  }

  /** Removes the binding if `session` still holds `nodeId`; true when it did. */
  unbind(nodeId: string, session: NodeSession): boolean {
    if (this.sessions.get(nodeId) !== session) return false;
    this.sessions.delete(nodeId);
    return true;
  }

  get(nodeId: string): NodeSession | undefined {
    return this.sessions.get(nodeId);
  }

  sessionsList(): IterableIterator<NodeSession> {
    return this.sessions.values();
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * Keeps a dead node's last view for a while. The map is in burial order (a node buried again
   * moves to the end), so the expired ones are at its front: the sweep stops at the first kept,
   * and a storm of deaths costs O(1) each, not O(dead nodes) each.
   */
  buryNode(view: NodeView): void {
    const now = Date.now();
    this.dead.delete(view.node_id);
    this.dead.set(view.node_id, { view: { ...view, state: 'dead', connected: false, running_jobs: [] }, until: now + DEAD_NODES_KEPT_MS });
    for (const [id, entry] of this.dead) {
      if (entry.until >= now) break;
      this.dead.delete(id);
    }
  }

  views(runningJobs: (nodeId: string) => string[]): NodeView[] {
    const views: NodeView[] = [];
    for (const [nodeId, session] of this.sessions) views.push(viewOf(nodeId, session, this.owner, runningJobs(nodeId)));
    for (const { view } of this.dead.values()) views.push(view);
    return views;
  }

}

export function viewOf(nodeId: string, session: NodeSession, owner: string, runningJobs: string[]): NodeView {
  const context = session.actor.getSnapshot().context;
  const name = context.registration?.info.tags.name;
  return {
    node_id: nodeId,
    hostname: context.registration?.info.hostname ?? '',
    ...(name === undefined ? {} : { name }),
    state: session.state,
    connected: session.connected,
    owner,
    running_jobs: runningJobs,
    last_heartbeat: new Date(session.lastHeard).toISOString(),
  };
}
