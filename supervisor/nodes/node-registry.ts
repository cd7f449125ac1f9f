// Which session holds which node: at most one live session per node id (PROTOCOL.md 4.7),
// plus a memory of dead nodes (`deadNodeRetentionMs`) so that operators see them go.
import type { NodeSession } from './node-session.js';
import type { NodeDetail, NodeView } from '../admin/wire-types.js';
import { transportOf } from './node-listeners.js';

export class NodeRegistry {
  private readonly sessions = new Map<string, NodeSession>();
  private readonly dead = new Map<string, { view: NodeView; until: number }>();

  /** `deadNodeRetentionMs`: how long a dead node stays listed; `now` for tests. */
  constructor(
    readonly owner: string,
    private readonly deadNodeRetentionMs: number,
    private readonly now: () => number = Date.now,
  ) {}

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

  /** Dead nodes still remembered (listed as `dead` until `deadNodeRetentionMs` has passed). */
  get deadCount(): number {
    this.forgetDead();
    return this.dead.size;
  }

  /**
   * Keeps a dead node's last view for a while. The map is in burial order (a node buried again
   * moves to the end), so the expired ones are at its front: the sweep stops at the first kept,
   * and a storm of deaths costs O(1) each, not O(dead nodes) each.
   */
  buryNode(view: NodeView): void {
    this.dead.delete(view.node_id);
    this.dead.set(view.node_id, { view: { ...view, state: 'dead', connected: false, running_jobs: [] }, until: this.now() + this.deadNodeRetentionMs });
    this.forgetDead();
  }

  views(runningJobs: (nodeId: string) => string[]): NodeView[] {
    this.forgetDead();
    const views: NodeView[] = [];
    for (const [nodeId, session] of this.sessions) views.push(viewOf(nodeId, session, this.owner, runningJobs(nodeId)));
    for (const { view } of this.dead.values()) views.push(view);
    return views;
  }

  /** One node, live or still remembered dead, with its capabilities while it is live. */
  view(nodeId: string, runningJobs: (nodeId: string) => string[]): NodeDetail | undefined {
    const session = this.sessions.get(nodeId);
    if (session !== undefined) {
      const capabilities = session.actor.getSnapshot().context.registration?.capabilities;
      const view: NodeDetail = viewOf(nodeId, session, this.owner, runningJobs(nodeId));
      if (capabilities !== undefined) view.capabilities = capabilities;
      view.transitions = session.transitions.map((t) => ({ from: t.from, to: t.to, at: new Date(t.at).toISOString(), event: t.event }));
      view.recent_messages = session.messages.list();
      return view;
    }
    this.forgetDead();
    return this.dead.get(nodeId)?.view;
  }

  /** Dead nodes past their retention are dropped (on every read, so none outlives it). */
  private forgetDead(): void {
    const now = this.now();
    // In burial order: the expired ones are at the front, so the sweep stops at the first kept.
    for (const [id, entry] of this.dead) {
      if (entry.until > now) break;
      this.dead.delete(id);
    }
  }
}

export function viewOf(nodeId: string, session: NodeSession, owner: string, runningJobs: string[]): NodeView {
  const context = session.actor.getSnapshot().context;
  const info = context.registration?.info;
  const view: NodeView = {
    node_id: nodeId,
    hostname: info?.hostname ?? '',
    state: session.state,
    connected: session.connected,
    owner,
    running_jobs: runningJobs,
    last_heartbeat: new Date(session.lastHeard).toISOString(),
    tags: info?.tags ?? {},
    transport: transportOf(session.connection),
    // The version its RegisterAck agreed (version 1 until the node has registered).
    protocol_version: context.registration?.protocolVersion ?? 1,
  };
  // `muster agent --name` sends it as the tag `name` (node_info has no field for it).
  const name = info?.tags.name;
  if (name !== undefined && name !== '') view.name = name;
  return view;
}
