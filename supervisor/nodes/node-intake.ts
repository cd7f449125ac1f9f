// Where node connections come in: each accepted connection is checked by the node gate
// (allow-list, bans, per-address limits) before any frame is read, then gets its own
// NodeSession; the intake keeps every session whose actor lives (a disconnected node's
// actor lives on until it resumes or expires), and refuses everything once stopping.
import { CODEC_JSON, encodeBody } from '../../protocol/codec.js';
import { MusterError } from '../../protocol/errors.js';
import type { Connection } from '../../transports/transport.js';
import type { NodeGate } from '../security/node-gate.js';
import { transportOf } from './node-listeners.js';
import { NodeSession, type SessionHost } from './node-session.js';

export class NodeIntake {
  private readonly sessions = new Set<NodeSession>();
  /** Sessions with a connection still open: counted out at its close or at their actor's end, whichever comes first. */
  private readonly connected = new Set<NodeSession>();
  private readonly host: SessionHost;
  private stopping = false;

  /** What each session's observer (the scheduler's fleet feed) is told when its connection closes. */
  private readonly closedHooks = new WeakMap<NodeSession, () => void>();

  constructor(
    host: SessionHost,
    private readonly gate: NodeGate,
    /** Called for each new session; the function it returns is called when the connection closes. */
    private readonly observe: (session: NodeSession) => () => void = () => () => {},
  ) {
    this.host = {
      ...host,
      ended: (session, output) => {
        this.sessions.delete(session);
        this.connected.delete(session);
        host.ended(session, output);
      },
      connectionClosed: (session, reason) => {
        this.connected.delete(session);
        host.connectionClosed?.(session, reason);
        this.closedHooks.get(session)?.();
      },
    };
  }

  /** Node connections open now. */
  get connections(): number {
    return this.connected.size;
  }

  /** Node connections open now, by transport (a scan: for a scrape, not per message). */
  connectionsByTransport(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const session of this.connected) {
      const transport = transportOf(session.connection);
      counts.set(transport, (counts.get(transport) ?? 0) + 1);
    }
    return counts;
  }

  /** False once stopping: no connection is taken any more. */
  get accepting(): boolean {
    return !this.stopping;
  }

  accept(conn: Connection): void {
    if (this.stopping) {
      this.refuse(conn, new MusterError('shutting_down', 'the control plane is stopping'));
      return;
    }
    const refusal = this.gate.admit(conn);
    if (refusal !== undefined) {
      this.refuse(conn, refusal);
      return;
    }
    this.host.meter.connectionOpened(transportOf(conn));
    const session = new NodeSession(conn, this.host);
    this.closedHooks.set(session, this.observe(session));
    this.sessions.add(session);
    this.connected.add(session);
    session.start();
  }

  /** Refuses new connections; returns every live session, for the plane to tell them it stops. */
  stop(): NodeSession[] {
    this.stopping = true;
    return [...this.sessions];
  }

  /** Answers `err` and closes, before any session (or frame read). */
  private refuse(conn: Connection, err: MusterError): void {
    conn.start({ frame: () => {}, error: () => {}, closed: () => {} });
    const body = encodeBody(CODEC_JSON, { type: 'Error', data: err.toData() });
    conn.send(CODEC_JSON, body);
    this.host.meter.messageOut('Error', body.length + 1);
    this.host.meter.protocolError(err.code);
    void conn.close();
  }
}
