// Which session holds which node: at most one live session per node id (PROTOCOL.md 4.7),
// plus a memory of dead nodes (`deadNodeRetentionMs`) so that operators see them go.
import type { NodeSession } from './node-session.js';
import type { NodeDetail, NodeView } from '../admin/wire-types.js';
import { transportOf } from './node-listeners.js';

/** The protocol version every session of this plane speaks (`RegisterAck.protocol_version`). */
const SESSION_PROTOCOL_VERSION = 1;

export class NodeRegistry {
  private readonly sessions = new Map<string, NodeSession>();
  private readonly dead = new Map<string, { view: NodeView; until: number }>();

  /** `deadNodeRetentionMs`: how long a dead node stays listed; `now` for tests. */
  constructor(
    private readonly owner: string,
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

  /** Keeps a dead node's last view for a while. */
  buryNode(view: NodeView): void {
    this.dead.set(view.node_id, { view: { ...view, state: 'dead', running_jobs: [] }, until: this.now() + this.deadNodeRetentionMs });
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
      view.transitions = session.transitions.map((t) => ({ from: t.from, to: t.to, at: new Date(t.at).toISOString() }));
      return view;
    }
    this.forgetDead();
    return this.dead.get(nodeId)?.view;
  }

  /** Dead nodes past their retention are dropped (on every read, so none outlives it). */
  private forgetDead(): void {
    const now = this.now();
    for (const [id, entry] of this.dead) if (entry.until <= now) this.dead.delete(id);
  }
}

export function viewOf(nodeId: string, session: NodeSession, owner: string, runningJobs: string[]): NodeView {
  const context = session.actor.getSnapshot().context;
  const info = context.registration?.info;
  const view: NodeView = {
    node_id: nodeId,
    hostname: info?.hostname ?? '',
    state: session.state,
    owner,
    running_jobs: runningJobs,
    last_heartbeat: new Date(context.liveness.lastSeen).toISOString(),
    tags: info?.tags ?? {},
    transport: transportOf(session.connection),
    protocol_version: SESSION_PROTOCOL_VERSION,
  };
  // `name` comes with `muster agent --name` (read loosely: older node_info has none).
  const name: unknown = (info as { name?: unknown } | undefined)?.name;
  if (typeof name === 'string' && name !== '') view.name = name;
  return view;
}
