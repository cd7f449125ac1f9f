// The plane's side of the `artifacts` wire feature (PROTOCOL.md section 8): ArtifactStart,
// ArtifactChunk and ArtifactEnd from a node go into the ArtifactStore, for the attempt the node
// holds now only (the job coordinator's standing check, as for logs and results), and are
// answered with ArtifactAck: after each Start with what is stored already, whenever half a
// window more was stored, after End once the digest matched; a chunk not at `received` gets an
// Ack with the right place and is dropped. Refusals are `artifact_rejected` with `field`, and what
// was stored of that upload is dropped, unless the upload is not the sender's (it stays intact).
// Each upload's messages are handled in order, one at a time: chunks wait in memory only while
// the one before is written, which the window bounds. A stored chunk is given back to the
// node's rates (the window paces it). Uploads of attempts that ended are dropped (bus events).
import type { Logger } from 'pino';
import { MusterError, toMusterError } from '../../protocol/errors.js';
import { ARTIFACTS_MAX, type EnvelopeOf } from '../../protocol/messages.js';
import type { Bus, BusEvent } from '../bus/bus.js';
import type { ArtifactMessage, NodeSession } from '../nodes/node-session.js';
import type { ArtifactStore } from './artifact-store.js';

export interface ArtifactIntakeOptions {
  store: ArtifactStore;
  /** Whether `nodeId` holds that attempt of the job now (the job coordinator's standing check). */
  holds(nodeId: string, jobId: string, attempt: number): boolean;
  /** `artifact_window_bytes` of the RegisterAck: an Ack goes out each time half of it more is stored. */
  windowBytes: number;
  logger: Logger;
  /** Job events: an upload of an attempt that ended, or was taken back, is dropped. */
  bus?: Bus;
}

/** The sending end of one node's session, as the intake uses it. */
export type ArtifactSession = Pick<NodeSession, 'send' | 'sendError'>;

/** An upload under way, as this plane process knows it. */
interface Upload {
  artifactId: string;
  jobId: string;
  attempt: number;
  nodeId: string;
  size: number;
  /** Bytes the store holds (after the last write settled). */
  received: number;
  /** Bytes accepted and waiting on `chain` to be written. */
  queued: number;
  /** `received` when the last Ack went out. */
  acked: number;
  /** The upload's messages, one after another. */
  chain: Promise<void>;
  /** Set once refused or dropped: what is still queued on the chain is skipped. */
  gone: boolean;
}

const ENDED: ReadonlySet<string> = new Set(['Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered']);

export class ArtifactIntake {
  readonly #uploads = new Map<string, Upload>();
  readonly #unsubscribe: (() => void) | undefined;

  constructor(private readonly o: ArtifactIntakeOptions) {
    this.#unsubscribe = o.bus?.subscribe((event) => this.heard(event));
  }

  /** Uploads this process is taking now. */
  get active(): number {
    return this.#uploads.size;
  }

  /** One artifact message of a registered node; `refund` gives a stored chunk's cost back to its rates. */
  handle(session: ArtifactSession, nodeId: string, message: ArtifactMessage, refund: () => void = () => undefined): void {
    switch (message.type) {
      case 'ArtifactStart':
        return this.start(session, nodeId, message);
      case 'ArtifactChunk':
        return this.chunk(session, nodeId, message, refund);
      case 'ArtifactEnd':
        return this.end(session, nodeId, message);
    }
  }

  async close(): Promise<void> {
    this.#unsubscribe?.();
    await Promise.all([...this.#uploads.values()].map((u) => u.chain));
    this.#uploads.clear();
  }

  private start(session: ArtifactSession, nodeId: string, message: EnvelopeOf<'ArtifactStart'>): void {
    const { data, id } = message;
    const known = this.#uploads.get(data.artifact_id);
    if (known !== undefined && known.nodeId !== nodeId) {
      return this.refuse(session, id, undefined, 'data.artifact_id', `artifact ${data.artifact_id} is another node's upload`);
    }
    if (!this.o.holds(nodeId, data.job_id, data.attempt)) {
      return this.refuse(session, id, known, 'data.attempt', `attempt ${data.attempt} of job ${data.job_id} is not this node's current attempt`);
    }
    if (known === undefined && this.uploadsOf(data.job_id, data.attempt) >= ARTIFACTS_MAX) {
      return this.refuse(session, id, undefined, 'data.artifact_id', `attempt ${data.attempt} of job ${data.job_id} already has ${ARTIFACTS_MAX} uploads under way`);
    }
    const upload: Upload = known ?? {
      artifactId: data.artifact_id,
      jobId: data.job_id,
      attempt: data.attempt,
      nodeId,
      size: data.size,
      received: 0,
      queued: 0,
      acked: 0,
      chain: Promise.resolve(),
      gone: false,
    };
    this.#uploads.set(data.artifact_id, upload);
    this.then(upload, async () => {
      // A repeat of a Start whose upload completed (its last Ack was lost with the connection).
      const done = (await this.o.store.list(data.job_id)).find((r) => r.artifact_id === data.artifact_id);
      if (done !== undefined && done.attempt === data.attempt && done.name === data.name && done.size === data.size && done.sha256 === data.sha256) {
        this.forget(upload);
        session.send('ArtifactAck', { artifact_id: data.artifact_id, received: done.size, complete: true }, id);
        return;
      }
      try {
        const { received } = await this.o.store.start(data);
        upload.received = received;
        upload.acked = received;
        session.send('ArtifactAck', { artifact_id: data.artifact_id, received, complete: false }, id);
      } catch (err) {
        // The store refused it and kept what it had (another upload of the name, a size over the limit).
        if (known === undefined) this.forget(upload);
        this.answerRefusal(session, id, err);
      }
    });
  }

  private chunk(session: ArtifactSession, nodeId: string, message: EnvelopeOf<'ArtifactChunk'>, refund: () => void): void {
    const { data, id } = message;
    const upload = this.ownUpload(session, nodeId, data.artifact_id, id);
    if (upload === undefined) return;
    const bytes = typeof data.data === 'string' ? Buffer.from(data.data, 'base64') : data.data;
    const at = upload.received + upload.queued;
    // Not where the upload stands, or past the window (a node that does not wait for Acks): dropped, and told the place.
    if (data.offset !== at || upload.queued + bytes.length > this.o.windowBytes) {
      this.then(upload, () => {
        session.send('ArtifactAck', { artifact_id: upload.artifactId, received: upload.received, complete: false }, id);
      });
      return;
    }
    if (at + bytes.length > upload.size) {
      this.refuse(session, id, upload, 'data.data', `artifact ${upload.artifactId} is larger than its size ${upload.size}`);
      return;
    }
    upload.queued += bytes.length;
    this.then(upload, async () => {
      try {
        const { received } = await this.o.store.write(upload.artifactId, data.offset, bytes);
        upload.queued -= bytes.length;
        upload.received = received;
      } catch (err) {
        this.forget(upload);
        await this.o.store.drop(upload.artifactId);
        this.answerRefusal(session, id, err);
        return;
      }
      refund();
      if (upload.received - upload.acked >= this.o.windowBytes / 2) {
        upload.acked = upload.received;
        session.send('ArtifactAck', { artifact_id: upload.artifactId, received: upload.received, complete: false }, id);
      }
    });
  }

  private end(session: ArtifactSession, nodeId: string, message: EnvelopeOf<'ArtifactEnd'>): void {
    const { data, id } = message;
    const upload = this.ownUpload(session, nodeId, data.artifact_id, id);
    if (upload === undefined) return;
    this.then(upload, async () => {
      try {
        const record = await this.o.store.end(upload.artifactId);
        this.forget(upload);
        session.send('ArtifactAck', { artifact_id: upload.artifactId, received: record.size, complete: true }, id);
        this.o.logger.info({ job_id: record.job_id, attempt: record.attempt, artifact_id: record.artifact_id, name: record.name, size: record.size }, 'artifact stored');
      } catch (err) {
        // Short, or not the digest announced: the store has dropped it.
        this.forget(upload);
        this.answerRefusal(session, id, err);
      }
    });
  }

  /** The sender's upload of that id, still for its current attempt; otherwise refused (and, when its own, dropped). */
  private ownUpload(session: ArtifactSession, nodeId: string, artifactId: string, replyTo: string | undefined): Upload | undefined {
    const upload = this.#uploads.get(artifactId);
    if (upload === undefined || upload.nodeId !== nodeId) {
      this.refuse(session, replyTo, undefined, 'data.artifact_id', `no upload ${artifactId} under way: send ArtifactStart first`);
      return undefined;
    }
    if (!this.o.holds(nodeId, upload.jobId, upload.attempt)) {
      this.refuse(session, replyTo, upload, 'data.artifact_id', `artifact ${artifactId} is for attempt ${upload.attempt} of job ${upload.jobId}, which is not this node's current attempt`);
      return undefined;
    }
    return upload;
  }

  /** Runs `step` after the upload's earlier messages, unless it was refused meanwhile. */
  private then(upload: Upload, step: () => void | Promise<void>): void {
    upload.chain = upload.chain
      .then(() => (upload.gone ? undefined : step()))
      .catch((err: unknown) => this.o.logger.error({ err, artifact_id: upload.artifactId }, 'artifact upload step failed'));
  }

  /** `artifact_rejected`; the sender's own upload (`upload`), when given, is dropped with what it stored. */
  private refuse(session: ArtifactSession, replyTo: string | undefined, upload: Upload | undefined, field: string, message: string): void {
    session.sendError(new MusterError('artifact_rejected', message, { field }), replyTo);
    if (upload === undefined) return;
    this.forget(upload);
    void upload.chain.then(() => this.o.store.drop(upload.artifactId)).catch((err: unknown) => {
      this.o.logger.error({ err, artifact_id: upload.artifactId }, 'dropping a refused artifact failed');
    });
  }

  private answerRefusal(session: ArtifactSession, replyTo: string | undefined, err: unknown): void {
    const error = toMusterError(err);
    session.sendError(error.code === 'artifact_rejected' ? error : new MusterError('internal', 'the artifact could not be stored'), replyTo);
    if (error.code !== 'artifact_rejected') this.o.logger.error({ err }, 'artifact store failed');
  }

  private forget(upload: Upload): void {
    upload.gone = true;
    if (this.#uploads.get(upload.artifactId) === upload) this.#uploads.delete(upload.artifactId);
  }

  private uploadsOf(jobId: string, attempt: number): number {
    let n = 0;
    for (const u of this.#uploads.values()) if (u.jobId === jobId && u.attempt === attempt) n++;
    return n;
  }

  /** A job ended, or was queued as its next attempt: uploads of its earlier attempts will never complete. */
  private heard(event: BusEvent): void {
    if (event.kind !== 'job' || this.#uploads.size === 0) return;
    const ended = ENDED.has(event.state);
    for (const upload of [...this.#uploads.values()]) {
      if (upload.jobId !== event.job_id || (!ended && upload.attempt >= event.attempt)) continue;
      this.forget(upload);
      void upload.chain.then(() => this.o.store.drop(upload.artifactId)).catch((err: unknown) => {
        this.o.logger.error({ err, artifact_id: upload.artifactId }, 'dropping an ended attempt\'s artifact failed');
      });
    }
  }
}
