// One connection to a control plane, at the level of messages: envelopes out in the
// agent's codec, frames in decoded and validated. A frame that does not decode or
// validate is logged and ignored; a broken framing layer closes the connection.
import type { Logger } from 'pino';
import { codecByName, encodeBody, ENCRYPTED_BIT, type Codec, type CodecName } from '../protocol/codec.js';
import { MusterError } from '../protocol/errors.js';
import type { MessageData, NodeMessageType, PlaneMessage } from '../protocol/messages.js';
import { readPlaneMessage } from '../protocol/message-reader.js';
import type { Connection } from '../transports/transport.js';

export interface PlaneLinkHandlers {
  /** A valid message from the control plane. */
  message(message: PlaneMessage): void;
  /** The connection is gone; called once. */
  closed(err?: Error): void;
}

let nextMessageId = 0;

export class PlaneLink {
  private readonly codec: Codec;
  private closedReported = false;

  constructor(
    private readonly conn: Connection,
    codec: CodecName,
    private readonly logger: Logger,
    private readonly handlers: PlaneLinkHandlers,
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
        this.logger.error({ err, code: err.code }, 'broken frame from control plane; closing');
        void this.conn.close();
      },
      closed: (err) => {
        if (this.closedReported) return;
        this.closedReported = true;
        this.handlers.closed(err);
      },
    });
  }

  /** Sends one message; silently dropped when the connection is already closed. */
  send<T extends NodeMessageType>(type: T, data: MessageData<T>, traceparent?: string): void {
    if (this.isClosed) return;
    nextMessageId = (nextMessageId + 1) % Number.MAX_SAFE_INTEGER;
    const envelope: Record<string, unknown> = { type, id: `n-${nextMessageId}`, data };
    if (traceparent !== undefined) envelope.traceparent = traceparent;
    this.conn.send(this.codec, encodeBody(this.codec, envelope));
  }

  /** Flushes what is queued, then closes. */
  close(): Promise<void> {
    return this.conn.close();
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    if ((codecByte & ENCRYPTED_BIT) !== 0) {
      this.logger.error('control plane sends encrypted frames: it needs the agent started with its key (--encrypt-key-file); closing');
      void this.conn.close();
      return;
    }
    let message: PlaneMessage;
    try {
      message = readPlaneMessage(codecByte as Codec, body);
    } catch (err) {
      const code = err instanceof MusterError ? err.code : 'internal';
      this.logger.warn({ err, code }, 'ignoring bad frame from control plane');
      return;
    }
    this.handlers.message(message);
  }
}
