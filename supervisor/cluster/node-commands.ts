// The command channel to the replica that owns a node: any replica may assign a job to a node,
// cancel an attempt, drain, undrain or ask for a node to be handed over (release, when the node
// reached another replica), and only the owner has the node's connection. Each replica answers
// request/reply on `muster.cmd.<replica_id>`: one subscription per replica, not per node, so the
// cost does not grow with the fleet. A sender learns at once when the owner is not listening
// (NATS answers "no responders"), and within `timeoutMs` when it does not answer.
import { errors, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { MusterError } from '../../protocol/errors.js';
import type { Logger } from '../../observability/logger.js';
import { serverHas } from './nats-waits.js';
import { NATS_RETRY_AFTER_MS, natsTrouble, unavailable } from './nats-unavailable.js';
import { decodeReply, decodeRequest, encodeJson } from './node-command-codec.js';
import type { NatsStatusTracker } from './nats-status.js';
import { commandSubject } from './subjects.js';
import { traceparentOf } from '../../observability/spans.js';
import { processing, sending } from './nats-trace.js';
import { childTraceparent, TRACEPARENT_HEADER, traceparentOrNew } from './traceparent.js';

export type NodeCommand =
  /** Send the `JobAssignment` of this attempt (read from the job store) to the node. */
  | { kind: 'assign'; node_id: string; job_id: string; attempt: number }
  /** Send `CancelJob` for this attempt to the node running it. */
  | { kind: 'cancel'; job_id: string; attempt: number; reason?: string }
  | { kind: 'drain'; node_id: string }
  | { kind: 'undrain'; node_id: string }
  /** The node reached `to_replica`: close its old connection here (`session_replaced`) and give up its ownership. */
  | { kind: 'release'; node_id: string; to_replica: string };

export type NodeCommandKind = NodeCommand['kind'];

export type NodeCommandReply =
  | { status: 'ok' }
  /** This replica does not own the node (any more): the sender should read the ownership again. */
  | { status: 'not_owner'; reason: string }
  | { status: 'error'; reason: string };

/** What travels: the command and the replica that sent it. */
export interface NodeCommandRequest {
  from: string;
  command: NodeCommand;
}

export interface NodeCommandContext {
  /** The sending replica's id. */
  from: string;
  /** The request's trace context (a fresh one when it carried none). */
  traceparent: string;
}

/** What the owning replica does with each kind; the plane implements it. A throw becomes an `error` reply. */
export type NodeCommandHandler = {
  [K in NodeCommandKind]: (command: Extract<NodeCommand, { kind: K }>, context: NodeCommandContext) => Promise<NodeCommandReply> | NodeCommandReply;
};

export interface NodeCommandServerOptions {
  nc: NatsConnection;
  replicaId: string;
  handler: NodeCommandHandler;
  logger: Logger;
  /** The connection's state: while NATS is away a subscription needs no round trip (nats-waits.ts). */
  status?: Pick<NatsStatusTracker, 'state'>;
}

/** Serves this replica's commands on `muster.cmd.<replica_id>`. */
export class NodeCommandServer {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly sub: Subscription,
    private readonly status: Pick<NatsStatusTracker, 'state'> | undefined,
  ) {}

  /** Resolves once the server has the subscription: from then on, senders reach this replica. */
  static async start(o: NodeCommandServerOptions): Promise<NodeCommandServer> {
    const sub = o.nc.subscribe(commandSubject(o.replicaId), {
      callback: (err, msg) => {
        if (err !== null) o.logger.error({ err }, 'node command subscription failed');
        else void answer(o, msg);
      },
    });
    await serverHas(o.nc, o.status?.state);
    return new NodeCommandServer(o.nc, sub, o.status);
  }

  /**
   * Stops answering; once it resolves the server has dropped the subscription, so senders hear
   * "no responders" at once (before, a request that crossed the unsubscribe would time out).
   */
  async close(): Promise<void> {
    this.sub.unsubscribe();
    await serverHas(this.nc, this.status?.state);
  }
}

/** In a `process muster.cmd` span under the request's context (when tracing): the handler's spans are its children. */
function answer(o: NodeCommandServerOptions, msg: Msg): Promise<void> {
  const header = msg.headers?.get(TRACEPARENT_HEADER);
  return processing('muster.cmd', msg.subject, msg.data.length, header, () => answerNow(o, msg, traceparentOf() ?? traceparentOrNew(header)));
}

async function answerNow(o: NodeCommandServerOptions, msg: Msg, traceparent: string): Promise<void> {
  const decoded = decodeRequest(msg.data);
  let reply: NodeCommandReply;
  if ('problem' in decoded) {
    o.logger.warn({ subject: msg.subject, problem: decoded.problem }, 'refused a node command that is not one');
    reply = { status: 'error', reason: `not a node command: ${decoded.problem}` };
  } else {
    reply = await handle(o, decoded.request, traceparent);
  }
  const h = headers();
  h.set(TRACEPARENT_HEADER, traceparentOf() ?? childTraceparent(traceparent));
  try {
    msg.respond(encodeJson(reply), { headers: h });
  } catch (err) {
    o.logger.warn({ err }, 'could not answer a node command');
  }
}

async function handle(o: NodeCommandServerOptions, request: NodeCommandRequest, traceparent: string): Promise<NodeCommandReply> {
  const { command, from } = request;
  const run = o.handler[command.kind] as (c: NodeCommand, ctx: NodeCommandContext) => Promise<NodeCommandReply> | NodeCommandReply;
  try {
    return await run(command, { from, traceparent });
  } catch (err) {
    o.logger.error({ err, command: command.kind, from }, 'node command failed');
    // A MusterError's message is meant for peers; anything else is not shown to another replica.
    return { status: 'error', reason: err instanceof MusterError ? err.message : 'internal error' };
  }
}

export interface NodeCommandClientOptions {
  nc: NatsConnection;
  /** This replica's id, sent as `from`. */
  replicaId: string;
  /** How long the owner has to answer (`natsRequestTimeoutMs`). */
  timeoutMs: number;
  /** When given, a send while this replica is cut off from NATS fails at once instead of timing out. */
  status?: NatsStatusTracker;
}

/** Sends commands to the replicas that own nodes. */
export class NodeCommandClient {
  constructor(private readonly o: NodeCommandClientOptions) {}

  /**
   * Sends `command` to `owner` and resolves with its answer (ok, not_owner or error). Rejects
   * with a MusterError (`internal`) when the owner is not listening, does not answer within
   * `timeoutMs`, or this replica is cut off from NATS.
   */
  async send(owner: string, command: NodeCommand, traceparent?: string): Promise<NodeCommandReply> {
    const subject = commandSubject(owner);
    if (this.o.status !== undefined && this.o.status.state !== 'connected') {
      throw new MusterError('internal', `cannot reach owner replica ${owner}: this replica is ${this.o.status.state === 'closed' ? 'closed' : 'not connected to NATS'}`, {
        retryAfterMs: NATS_RETRY_AFTER_MS,
      });
    }
    const body = encodeJson({ from: this.o.replicaId, command });
    // A `send muster.cmd` span when tracing and in a span: the owner's `process muster.cmd` is its child.
    const msg = await sending('muster.cmd', subject, body.length, traceparent, async (header) => {
      const h = headers();
      h.set(TRACEPARENT_HEADER, header);
      try {
        return await this.o.nc.request(subject, body, { timeout: this.o.timeoutMs, headers: h });
      } catch (err) {
        throw this.failure(owner, subject, err);
      }
    });
    const reply = decodeReply(msg.data);
    if (reply === undefined) throw new MusterError('internal', `owner replica ${owner} gave an answer that is not a node command reply`);
    return reply;
  }

  private failure(owner: string, subject: string, err: unknown): MusterError {
    if (err instanceof errors.RequestError && err.isNoResponders()) {
      return new MusterError('internal', `owner replica ${owner} is not listening for commands (no responders on ${subject}): it is down or cut off from NATS`, { cause: err, retryAfterMs: NATS_RETRY_AFTER_MS });
    }
    if (err instanceof errors.TimeoutError) {
      return new MusterError('internal', `owner replica ${owner} did not answer within ${this.o.timeoutMs} ms`, { cause: err, retryAfterMs: NATS_RETRY_AFTER_MS });
    }
    const trouble = natsTrouble(err);
    if (trouble !== undefined) return unavailable(trouble, `send a command to owner replica ${owner}`, err);
    const reason = err instanceof Error ? err.message : String(err);
    return new MusterError('internal', `command to owner replica ${owner} failed: ${reason}`, { cause: err });
  }
}
