// A TCP proxy on loopback between a client and a server, so that a test can cut one client
// off from NATS while others stay connected: `cut()` resets every connection and refuses new
// ones until `heal()`; `freeze()` keeps the connections open but passes no byte (a hung
// network path, seen by the client only through its own timeouts) until `thaw()`.
// `upstreamBytes` counts what clients sent through, and `afterUpstream(n)` resolves once that
// many more have passed: a test cuts a transfer mid-way on an event, not after a guessed time.
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  private frozen = false;
  private readonly held: Array<() => void> = [];
  /** Bytes passed from clients to the target so far. */
  upstreamBytes = 0;
  private readonly byteWaiters: Array<{ at: number; resolve: () => void }> = [];

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const holder: { proxy?: TcpProxy } = {};
    const server = createServer((client) => holder.proxy?.accept(client, targetPort, targetHost));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    holder.proxy = new TcpProxy(server, address.port);
    return holder.proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Resets every proxied connection and refuses new ones. */
  cut(): void {
    this.isCut = true;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.isCut = false;
  }

  freeze(): void {
    this.frozen = true;
  }

  /** Passes on what was held back while frozen, then everything as it comes. */
  thaw(): void {
    this.frozen = false;
    for (const send of this.held.splice(0)) send();
  }

  /** Resolves once `bytes` more have passed from clients to the target. */
  afterUpstream(bytes: number): Promise<void> {
    return new Promise((resolve) => this.byteWaiters.push({ at: this.upstreamBytes + bytes, resolve }));
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private forward(from: Socket, to: Socket, upstream: boolean): void {
    from.on('data', (chunk: Buffer) => {
      const send = (): void => {
        if (to.destroyed) return;
        to.write(chunk);
        if (upstream) this.passed(chunk.length);
      };
      if (this.frozen || this.held.length > 0) this.held.push(send);
      else send();
    });
  }

  private passed(bytes: number): void {
    this.upstreamBytes += bytes;
    for (let i = this.byteWaiters.length - 1; i >= 0; i--) {
      const waiter = this.byteWaiters[i]!;
      if (this.upstreamBytes < waiter.at) continue;
      this.byteWaiters.splice(i, 1);
      waiter.resolve();
    }
  }

  private accept(client: Socket, port: number, host: string): void {
    if (this.isCut) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ port, host });
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    this.forward(client, upstream, true);
    this.forward(upstream, client, false);
  }
}
