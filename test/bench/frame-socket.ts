// A bare protocol client for the benchmarks: frames over one `net` socket, decoded
// envelopes out, with as little work of its own as possible so that it measures the plane.
import { connect, type Socket } from 'node:net';
import { decodeBody, type Codec } from '../../protocol/codec.js';
import { FrameDecoder } from '../../protocol/frame-decoder.js';

export interface Envelope {
  type: string;
  data: Record<string, unknown>;
  reply_to?: string;
}

export class FrameSocket {
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private waiters: { match: (e: Envelope) => boolean; resolve: (e: Envelope) => void }[] = [];
  /** Called for each frame when no waiter takes it. */
  onMessage: (e: Envelope) => void = () => {};
  /** Called with the raw byte count of each read, for echo baselines. */
  onBytes: (n: number) => void = () => {};

  private constructor(readonly socket: Socket, private readonly decode: boolean) {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      this.onBytes(chunk.length);
      if (this.decode) this.decoder.push(chunk, (codec, body) => this.deliver(decodeBody(codec as Codec, body) as Envelope));
    });
  }

  /** `localAddress`: the source address to connect from (any of 127.0.0.0/8 on loopback: many hosts from one machine). */
  static open(host: string, port: number, decode = true, localAddress?: string): Promise<FrameSocket> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port, localAddress }, () => resolve(new FrameSocket(socket, decode)));
      socket.once('error', reject);
    });
  }

  /** Writes bytes, waiting for the socket to drain when its buffer is full. */
  async write(bytes: Uint8Array): Promise<void> {
    if (!this.socket.write(bytes)) await new Promise((r) => this.socket.once('drain', r));
  }

  next(match: (e: Envelope) => boolean, timeoutMs = 30_000): Promise<Envelope> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out waiting for a frame')), timeoutMs);
      this.waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(envelope: Envelope): void {
    const i = this.waiters.findIndex((w) => w.match(envelope));
    if (i < 0) return this.onMessage(envelope);
    const [waiter] = this.waiters.splice(i, 1);
    waiter!.resolve(envelope);
  }
}
