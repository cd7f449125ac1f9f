// Every node of the cluster for any replica's API (`GET /v1/nodes`, `GET /v1/nodes/{id}`): each
// replica answers requests for its own nodes' views on `muster.nodes.<replica_id>`, a page at a
// time (a page of views stays far below NATS's 1 MiB `max_payload`); a replica asked for the
// fleet asks each live peer. Nothing is sent while nobody asks, so it costs nothing at rest.
import { headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { MusterError } from '../../protocol/errors.js';
import type { Logger } from '../../observability/logger.js';
import type { NodeDetail, NodeView } from '../admin/wire-types.js';
import { serverHas } from './nats-waits.js';
import type { NatsStatusTracker } from './nats-status.js';
import type { NatsState } from './nats-status.js';
import { natsTrouble, unavailable } from './nats-unavailable.js';
import { subjectToken } from './subjects.js';
import { TRACEPARENT_HEADER, traceparentOrNew } from './traceparent.js';
import { parseJsonObject } from './json-object.js';

/** Views per page: about 500 bytes each, so a page is ~100 KiB. */
export const NODES_PAGE = 200;
/** A reply larger than this is refused before it is parsed. */
const MAX_REPLY_BYTES = 1 << 20;
const MAX_ID_CHARS = 128;

type DirectoryRequest = { page: { after?: string } } | { node: string };
type DirectoryReply = { nodes: NodeView[]; more: boolean } | { node: NodeDetail | null };

/** What a replica shows of its own nodes. */
export interface OwnNodes {
  /** Its nodes' views, ordered by node id. */
  list(): NodeView[];
  get(nodeId: string): NodeDetail | undefined;
}

const encoder = new TextEncoder();

export function directorySubject(replicaId: string): string {
  return `muster.nodes.${subjectToken(replicaId)}`;
}

export class NodeDirectory {
  private sub: Subscription | undefined;

  constructor(
    private readonly nc: NatsConnection,
    private readonly replicaId: string,
    /** How long a peer has to answer, and the connection check (`reachable`) to pass. */
    readonly timeoutMs: number,
    private readonly logger: Logger,
    /** The connection's state: while NATS is away a subscription needs no round trip (nats-waits.ts). */
    private readonly status?: Pick<NatsStatusTracker, 'state'>,
  ) {}

  /** Answers peers' requests for this replica's nodes. */
  async serve(own: OwnNodes): Promise<void> {
    this.sub = this.nc.subscribe(directorySubject(this.replicaId), {
      callback: (err, msg) => {
        if (err !== null) this.logger.error({ err }, 'node directory subscription failed');
        else this.answer(own, msg);
      },
    });
    await serverHas(this.nc, this.status?.state);
  }

  /** Every node of replica `replicaId`, page by page. */
  async nodesOf(replicaId: string): Promise<NodeView[]> {
    const out: NodeView[] = [];
    let after: string | undefined;
    for (;;) {
      const reply = await this.ask(replicaId, after === undefined ? { page: {} } : { page: { after } });
      if (!('nodes' in reply)) throw new MusterError('internal', `replica ${replicaId} answered a page request with something else`);
      out.push(...reply.nodes);
      const last = reply.nodes[reply.nodes.length - 1];
      if (!reply.more || last === undefined) return out;
      after = last.node_id;
    }
  }

  /** One node of replica `replicaId`, or undefined when it has no such node. */
  async nodeOf(replicaId: string, nodeId: string): Promise<NodeDetail | undefined> {
    const reply = await this.ask(replicaId, { node: nodeId });
    return 'node' in reply && reply.node !== null ? reply.node : undefined;
  }

  /**
   * Rejects (unavailable, nats-unavailable.ts) unless this replica's connection answers a ping
   * within `timeoutMs`: a list of the cluster's nodes made while it is cut off would be this
   * replica's alone, and a hung server looks connected until its pings are missed.
   */
  async reachable(state: NatsState): Promise<void> {
    if (state !== 'connected') throw unavailable('disconnected', "list the cluster's nodes");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), this.timeoutMs)));
    const answer = await Promise.race([this.nc.flush().then(() => 'ok' as const, () => 'late' as const), late]);
    clearTimeout(timer);
    if (answer === 'late') throw unavailable('timeout', "list the cluster's nodes");
  }

  async close(): Promise<void> {
    this.sub?.unsubscribe();
    await serverHas(this.nc, this.status?.state);
  }

  private async ask(replicaId: string, request: DirectoryRequest): Promise<DirectoryReply> {
    let msg: Msg;
    try {
      // Every cluster message carries a trace context, as the bus and the commands do.
      const h = headers();
      h.set(TRACEPARENT_HEADER, traceparentOrNew(undefined));
      msg = await this.nc.request(directorySubject(replicaId), encoder.encode(JSON.stringify(request)), { timeout: this.timeoutMs, headers: h });
    } catch (err) {
      const trouble = natsTrouble(err);
      if (trouble !== undefined) throw unavailable(trouble, `list the nodes of replica ${replicaId}`, err);
      throw new MusterError('internal', `replica ${replicaId} did not list its nodes: ${(err as Error).message}`, { cause: err });
    }
    const reply = parseJsonObject(msg.data, MAX_REPLY_BYTES);
    if (reply === undefined || !(Array.isArray(reply.nodes) || 'node' in reply)) {
      throw new MusterError('internal', `replica ${replicaId} answered with something that is not a node list`);
    }
    return reply as DirectoryReply;
  }

  private answer(own: OwnNodes, msg: Msg): void {
    const request = parseJsonObject(msg.data, 4_096);
    let reply: DirectoryReply;
    if (request !== undefined && typeof request.node === 'string' && request.node.length <= MAX_ID_CHARS) {
      reply = { node: own.get(request.node) ?? null };
    } else if (request !== undefined && typeof request.page === 'object' && request.page !== null) {
      const after = (request.page as { after?: unknown }).after;
      reply = page(own.list(), typeof after === 'string' ? after : undefined);
    } else {
      this.logger.warn({ subject: msg.subject }, 'refused a node directory request that is not one');
      return;
    }
    try {
      msg.respond(encoder.encode(JSON.stringify(reply)));
    } catch (err) {
      this.logger.warn({ err }, 'could not answer a node directory request');
    }
  }
}

/** The page after node id `after` (views sorted by id, so pages neither skip nor repeat a node). */
function page(views: NodeView[], after: string | undefined): { nodes: NodeView[]; more: boolean } {
  const sorted = views.sort((a, b) => (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0));
  const start = after === undefined ? 0 : sorted.findIndex((v) => v.node_id > after);
  if (start < 0) return { nodes: [], more: false };
  const nodes = sorted.slice(start, start + NODES_PAGE);
  return { nodes, more: start + NODES_PAGE < sorted.length };
}

