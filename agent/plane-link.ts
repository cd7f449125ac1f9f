// One connection to a control plane, at the level of messages: envelopes out in the
// agent's codec, frames in decoded and validated. A frame the agent cannot take costs that
// frame only: one over `max_frame_bytes` (read whole up to the dial limit, 4 × by default)
// or one that does not validate is refused, and when it is a JobAssignment whose job id and
// attempt can be read the owner answers JobRejected; anything else is logged and ignored.
// Only a broken framing layer (a frame past the dial limit, say) closes the connection.
// With the `batch` wire feature, a Batch's envelopes are taken one by one as if each had come
// alone, and bursts of log chunks go out as one Batch (protocol/batch-coalescer.ts).
import type { Logger } from 'pino';
import { codecByName, decodeBody, DEFLATE_BIT, encodeBody, ENCRYPTED_BIT, type Codec, type CodecName } from '../protocol/codec.js';
import { deflateBody, inflateBody } from '../transports/deflate-body.js';
import { MusterError, type ErrorCode } from '../protocol/errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/frame-decoder.js';
import { BATCH_MAX, type MessageData, type NodeMessageType, type PlaneMessage } from '../protocol/messages.js';
import { validateBatch, validatePlaneMessage } from '../protocol/validator.js';
import { isBatchEnvelope, readBatch, type BatchItem } from '../protocol/batch.js';
import { BatchCoalescer } from '../protocol/batch-coalescer.js';
import type { Connection } from '../transports/transport.js';

export interface PlaneLinkHandlers {
  /** A valid message from the control plane. */
  message(message: PlaneMessage): void;
  /** A JobAssignment the agent cannot take (too large, or invalid), with why: answer JobRejected. */
  refused(jobId: string, attempt: number, reason: string): void;
  /** The connection is gone; called once, with the framing error when that was why. */
  closed(err?: Error): void;
}

let nextMessageId = 0;

/** A fresh envelope `id` (PROTOCOL.md section 2): the plane's answers and errors carry it back. */
function messageId(): string {
  nextMessageId = (nextMessageId + 1) % Number.MAX_SAFE_INTEGER;
  return `n-${nextMessageId}`;
}

/** What the agent sends several of at once: a job's output read in one go, the queue drained after a reconnect, a resync. */
const BATCHED_TYPES: ReadonlySet<NodeMessageType> = new Set(['LogChunk']);

// Enough of a refused assignment to answer it: the schema's own id and attempt shapes.
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
// A JobRejected reason quotes the validator's message, which is the plane's own text: bounded.
const MAX_REASON_CHARS = 300;

export class PlaneLink {
  private readonly codec: Codec;
  private closedReported = false;
  /** The framing error that made this side close, reported with `closed`. */
  private broken: MusterError | undefined;
  /** Set once the session agreed to `batch` (its RegisterAck said so). */
  private batcher: BatchCoalescer | undefined;

  constructor(
    private readonly conn: Connection,
    codec: CodecName,
    private readonly logger: Logger,
    private readonly handlers: PlaneLinkHandlers,
    /** Largest frame (codec byte and body) the agent takes. */
    private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {
    this.codec = codecByName(codec);
  }

  get isClosed(): boolean {
    return this.closedReported || this.conn.isClosed;
  }

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  start(): void {
    this.conn.start({
      frame: (codecByte, body) => this.onFrame(codecByte, body),
      error: (err) => {
        // A framing error is the peer's, not ours: its message says it all, a stack would not help.
        this.logger.error({ code: err.code, error: err.message }, 'broken frame from control plane; closing');
        this.broken = err;
        void this.conn.close();
      },
      closed: (err) => {
        if (this.closedReported) return;
        this.closedReported = true;
        this.handlers.closed(err ?? this.broken);
      },
    });
  }

  /**
   * Sends one message; returns its envelope `id`, which the plane's answer (and any `Error`
   * about it) carries back as `reply_to`. Undefined, and nothing sent, when already closed.
   */
  send<T extends NodeMessageType>(type: T, data: MessageData<T>, traceparent?: string): string | undefined {
    if (this.isClosed) return undefined;
    const id = messageId();
    const envelope: Record<string, unknown> = { type, id, data };
    if (traceparent !== undefined) envelope.traceparent = traceparent;
    const body = encodeBody(this.codec, envelope);
    if (this.batcher !== undefined) {
      if (BATCHED_TYPES.has(type)) {
        this.batcher.add(type, body);
        return id;
      }
      // What is held goes first: a job's output before its result.
      this.batcher.flush();
    }
    // File bytes are most often compressed already (archives): deflating them costs CPU for nothing.
    this.write(body, type !== 'ArtifactChunk');
    return id;
  }

  private write(body: Uint8Array, compressible = true): void {
    if (this.isClosed) return;
    if (compressible && this.compressFrom !== undefined && body.length >= this.compressFrom) this.conn.send(this.codec | DEFLATE_BIT, deflateBody(body));
    else this.conn.send(this.codec, body, compressible);
  }

  /** The session agreed to `batch`: Batch frames are taken, and bursts of log chunks go out as one. */
  useBatches(): void {
    this.batcher ??= new BatchCoalescer({
      codec: this.codec,
      maxBodyBytes: this.maxFrameBytes - 1,
      write: (body) => this.write(body),
      batchId: messageId,
    });
  }

  /** The session agreed to `deflate` (its RegisterAck said so): large bodies go out compressed, compressed ones are taken in. */
  compressFrom: number | undefined;

  /**
   * A session without `deflate`: where the transport compresses on its own (gRPC, which the
   * plane's listener accepts unless it encrypts), bodies of at least `minBytes` go out
   * compressed by it. Nothing on other transports, nor behind payload encryption.
   */
  useTransportCompression(minBytes: number): void {
    this.conn.compressFrom?.(minBytes);
  }

  /** Flushes what is queued, then closes. */
  close(): Promise<void> {
    this.batcher?.flush();
    return this.conn.close();
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    if ((codecByte & ENCRYPTED_BIT) !== 0) {
      this.logger.error('control plane sends encrypted frames: it needs the agent started with its key (--encrypt-key-file); closing');
      void this.conn.close();
      return;
    }
    if ((codecByte & DEFLATE_BIT) !== 0 && this.compressFrom !== undefined) {
      try {
        body = inflateBody(body, 4 * this.maxFrameBytes);
      } catch (err) {
        this.logger.warn({ err }, 'ignoring a compressed frame from control plane that does not inflate within the read limit');
        return;
      }
      codecByte &= ~DEFLATE_BIT;
    }
    let decoded: unknown;
    try {
      decoded = decodeBody(codecByte as Codec, body);
    } catch (err) {
      const code = err instanceof MusterError ? err.code : 'internal';
      this.logger.warn({ err, code }, 'ignoring undecodable frame from control plane');
      return;
    }
    const frameBytes = body.length + 1;
    const batch = this.batcher !== undefined && isBatchEnvelope(decoded);
    if (frameBytes > this.maxFrameBytes) {
      const reason = `frame of ${frameBytes} bytes exceeds max_frame_bytes ${this.maxFrameBytes}`;
      // Every assignment in a Batch too large to take is refused, as each would be alone.
      const refused = batch ? batchedEnvelopes(decoded) : [decoded];
      for (const envelope of refused) this.refuse(envelope, 'frame_too_large', reason);
      return;
    }
    if (batch) this.takeBatch(decoded);
    else this.take(decoded);
  }

  /** Each envelope of a Batch as if it had come in its own frame. */
  private takeBatch(decoded: unknown): void {
    let items: Iterable<BatchItem<PlaneMessage>>;
    try {
      items = readBatch(validateBatch(decoded), validatePlaneMessage);
    } catch (err) {
      this.logger.warn({ err }, 'ignoring an invalid Batch from control plane');
      return;
    }
    for (const item of items) {
      if ('error' in item) this.refuseInvalid(item.envelope, item.error);
      else this.handlers.message(item.message);
    }
  }

  private take(decoded: unknown): void {
    let message: PlaneMessage;
    try {
      message = validatePlaneMessage(decoded);
    } catch (err) {
      this.refuseInvalid(decoded, err);
      return;
    }
    this.handlers.message(message);
  }

  private refuseInvalid(decoded: unknown, err: unknown): void {
    const code = err instanceof MusterError ? err.code : 'internal';
    const field = err instanceof MusterError && err.field !== undefined ? ` (${err.field})` : '';
    this.refuse(decoded, code, `invalid ${typeOf(decoded) ?? 'message'}${field}: ${err instanceof Error ? err.message : String(err)}`, err);
  }

  private refuse(decoded: unknown, code: ErrorCode, reason: string, err?: unknown): void {
    const job = assignmentIds(decoded);
    this.logger.warn({ err, code, reason, type: typeOf(decoded), job_id: job?.jobId }, 'refusing a frame from control plane');
    if (job !== undefined) this.handlers.refused(job.jobId, job.attempt, reason.slice(0, MAX_REASON_CHARS));
  }
}

/** The envelopes of a decoded Batch as they are, for refusing them; none when it holds no list. */
function batchedEnvelopes(decoded: unknown): unknown[] {
  const messages = (decoded as { data?: { messages?: unknown } }).data?.messages;
  return Array.isArray(messages) ? messages.slice(0, BATCH_MAX) : [];
}

/** The job id and attempt of a decoded JobAssignment that failed a check, when they can be read. */
function assignmentIds(decoded: unknown): { jobId: string; attempt: number } | undefined {
  if (typeOf(decoded) !== 'JobAssignment') return undefined;
  const data = (decoded as { data?: unknown }).data;
  if (typeof data !== 'object' || data === null) return undefined;
  const { job_id: jobId, attempt } = data as Record<string, unknown>;
  if (typeof jobId !== 'string' || !UUID.test(jobId)) return undefined;
  if (typeof attempt !== 'number' || !Number.isSafeInteger(attempt) || attempt < 1) return undefined;
  return { jobId, attempt };
}

function typeOf(decoded: unknown): string | undefined {
  const type = typeof decoded === 'object' && decoded !== null ? (decoded as { type?: unknown }).type : undefined;
  return typeof type === 'string' ? type.slice(0, 64) : undefined;
}
