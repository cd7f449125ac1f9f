// Payload encryption (PROTOCOL.md section 6) as a decorator of any transport's Connection:
// every frame out is encrypted under its codec byte with 0x80 set, every frame in must be
// encrypted and authentic. Its owner sees plaintext frames with plain codec bytes, so the
// layers above (node sessions, the agent) are the same with encryption on or off.
import { ENCRYPTED_BIT } from '../protocol/codec.js';
import { MusterError, toMusterError } from '../protocol/errors.js';
import type { PayloadCipher } from './payload-cipher.js';
import type { Connection, FrameSink } from './transport.js';

/**
 * `conn` with every frame encrypted in both directions under `cipher` (one cipher per
 * connection: each has its own nonce sequence). Call before `conn.start`. A received frame
 * that is not encrypted, or fails authentication, is reported to the owner as a fatal
 * `decrypt_failed` through `sink.error`, and later frames are dropped until the owner closes
 * (as a transport does after a framing error); the owner's `Error` reply goes out encrypted.
 */
export function encrypted(conn: Connection, cipher: PayloadCipher): Connection {
  return new EncryptedConnection(conn, cipher);
}

class EncryptedConnection implements Connection {
  private sink: FrameSink | undefined;
  // Cleared on the first frame that does not decrypt: the peer is not one we can trust.
  private receiving = true;
  // Why this layer closed the connection, reported with the close.
  private closeError: Error | undefined;

  constructor(
    private readonly inner: Connection,
    private readonly cipher: PayloadCipher,
  ) {
    inner.useEncryptedFraming?.();
  }

  get id(): string {
    return this.inner.id;
  }

  get remoteAddress(): string {
    return this.inner.remoteAddress;
  }

  get peerNames(): readonly string[] {
    return this.inner.peerNames;
  }

  get isClosed(): boolean {
    return this.inner.isClosed;
  }

  start(sink: FrameSink): void {
    if (this.sink !== undefined) throw new Error(`connection ${this.id}: already started`);
    this.sink = sink;
    this.inner.start({
      frame: (codecByte, body) => this.onFrame(codecByte, body),
      error: (err) => {
        if (this.receiving) sink.error(err);
      },
      closed: (err) => sink.closed(err ?? this.closeError),
    });
  }

  send(codecByte: number, body: Uint8Array): void {
    if (this.inner.isClosed) return;
    const wireByte = codecByte | ENCRYPTED_BIT;
    let encryptedBody: Uint8Array;
    try {
      encryptedBody = this.cipher.encrypt(wireByte, body);
    } catch (err) {
      // Nonces used up: never send in plaintext, never reuse one; end this connection.
      this.closeError ??= err instanceof Error ? err : new Error(String(err));
      void this.inner.close();
      return;
    }
    this.inner.send(wireByte, encryptedBody);
  }

  pauseReading(ms: number): void {
    this.inner.pauseReading?.(ms);
  }

  // No `compressFrom`: ciphertext does not compress, and a transport's own compression must
  // never be switched on behind payload encryption (PROTOCOL.md section 8).

  close(): Promise<void> {
    return this.inner.close();
  }

  private onFrame(codecByte: number, body: Uint8Array): void {
    if (!this.receiving) return;
    let plaintext: Uint8Array;
    try {
      if ((codecByte & ENCRYPTED_BIT) === 0) {
        throw new MusterError('decrypt_failed', 'a plaintext frame on a connection with encryption on');
      }
      plaintext = this.cipher.decrypt(codecByte, body);
    } catch (err) {
      this.receiving = false;
      this.sink!.error(toMusterError(err));
      return;
    }
    // A throw here is the owner's bug: the transport below contains it, as for any frame.
    this.sink!.frame(codecByte & ~ENCRYPTED_BIT, plaintext);
  }
}
