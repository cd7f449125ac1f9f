// The raw baselines of the benchmarks: echo servers written straight on each library the
// transports use, with no Muster code on the path, run as their own process like the plane.
//
//   node --import tsx test/bench/echo-servers.ts [--tls-cert FILE --tls-key FILE] [--unix PATH] SCHEME...
//
// SCHEME is tcp, unix, tls (`net`/`tls` sockets piped back to themselves), ws, wss (a `ws`
// server that sends every message back as it came), grpc, grpcs (a grpc-js bidi
// `muster.v1.NodeLink/Connect` that writes every Frame back) or durable (a TCP echo that first
// writes what it read to a file and fdatasyncs it on the thread pool, as the plane's group commit
// does before it acknowledges: the least a durable acknowledgement costs on this machine).
// Prints one URL a line, in the order asked, as the transports' clients dial them, then `ready`.
import { mkdtempSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { WebSocketServer, type WebSocket } from 'ws';
import { nodeLinkService, type GrpcFrame } from '../../transports/grpc-frame.js';
import { grpcChannelOptions } from '../../transports/grpc-options.js';

/** Message limits as the plane's defaults: 4 × max_frame_bytes (PROTOCOL.md section 1). */
const MAX_FRAME_BYTES = 1_048_576;
const HOST = '127.0.0.1';

interface Pem {
  cert: string;
  key: string;
}

type Starter = (pem: Pem | undefined, unixPath: string) => Promise<string>;

const starters: Record<string, Starter> = {
  tcp: async () => `tcp://${HOST}:${await listen(createNetServer(pipeBack), HOST)}`,
  unix: async (_pem, path) => {
    await listen(createNetServer(pipeBack), path);
    process.once('exit', () => rmSync(path, { force: true }));
    return `unix://${path}`;
  },
  durable: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muster-durable-echo-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const file = await open(join(dir, 'log'), 'w');
    return `tcp://${HOST}:${await listen(createNetServer((socket) => durableEcho(socket, file)), HOST)}`;
  },
  tls: async (pem) => `tls://${HOST}:${await listen(createTlsServer(needPem(pem, 'tls'), pipeBack), HOST)}`,
  ws: async () => `ws://${HOST}:${await listenWebSocket(createHttpServer())}/v1/connect`,
  wss: async (pem) => `wss://${HOST}:${await listenWebSocket(createHttpsServer(needPem(pem, 'wss')))}/v1/connect`,
  grpc: async () => `grpc://${HOST}:${await listenGrpc(grpc.ServerCredentials.createInsecure())}`,
  grpcs: async (pem) => {
    const { cert, key } = needPem(pem, 'grpcs');
    const credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(cert), private_key: Buffer.from(key) }], false);
    return `grpcs://${HOST}:${await listenGrpc(credentials)}`;
  },
};

function pipeBack(socket: Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => {}); // a client that goes away mid-write is not our concern
  socket.pipe(socket);
}

/** The file's size is bounded, as a WAL that checkpoints is: writes wrap around to its start. */
const DURABLE_FILE_BYTES = 4 * 1024 * 1024;
let durableOffset = 0;

/** Each chunk read is written (on the event loop, as SQLite writes), synced on the thread pool, then echoed, in order. */
function durableEcho(socket: Socket, file: FileHandle): void {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let previous = Promise.resolve();
  socket.on('data', (chunk: Buffer) => {
    if (durableOffset + chunk.length > DURABLE_FILE_BYTES) durableOffset = 0;
    writeSync(file.fd, chunk, 0, chunk.length, durableOffset);
    durableOffset += chunk.length;
    const synced = file.datasync();
    previous = previous.then(async () => {
      await synced;
      socket.write(chunk);
    });
  });
}

/** Listens on `where` (a host, port 0, or a socket path); the bound port (0 for a path). */
function listen(server: Server, where: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    };
    if (where.startsWith('/')) server.listen(where, done);
    else server.listen(0, where, done);
  });
}

function listenWebSocket(server: HttpServer | HttpsServer): Promise<number> {
  const wss = new WebSocketServer({
    server,
    path: '/v1/connect',
    perMessageDeflate: false,
    maxPayload: 4 * MAX_FRAME_BYTES,
    handleProtocols: (protocols) => (protocols.has('muster.v1') ? 'muster.v1' : false),
  });
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    // `ws` writes each message on its own; corked until the end of this tick, the messages that
    // one read produced go back in one write, as `pipe` does for the stream echoes.
    const socket = req.socket;
    ws.on('message', (data, isBinary) => {
      if (socket.writableCorked === 0) {
        socket.cork();
        process.nextTick(() => socket.uncork());
      }
      ws.send(data as Buffer, { binary: isBinary });
    });
    ws.on('error', () => {});
  });
  return listen(server, HOST);
}

function listenGrpc(credentials: grpc.ServerCredentials): Promise<number> {
  const server = new grpc.Server(grpcChannelOptions(MAX_FRAME_BYTES));
  server.addService(nodeLinkService, {
    Connect: (call: grpc.ServerDuplexStream<GrpcFrame, GrpcFrame>) => {
      call.on('data', (frame: GrpcFrame) => call.write(frame));
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(`${HOST}:0`, credentials, (err, port) => (err === null ? resolve(port) : reject(err)));
  });
}

function needPem(pem: Pem | undefined, scheme: string): Pem {
  if (pem === undefined) throw new Error(`${scheme} needs --tls-cert and --tls-key`);
  return pem;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  return value;
}

async function main(args: string[]): Promise<void> {
  const certFile = option(args, '--tls-cert');
  const keyFile = option(args, '--tls-key');
  const unixPath = option(args, '--unix') ?? join(tmpdir(), `muster-echo-${process.pid}.sock`);
  const pem = certFile !== undefined && keyFile !== undefined ? { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') } : undefined;
  // SIGTERM is how the bench stops us: exit normally, so that a Unix socket file goes too.
  process.once('SIGTERM', () => process.exit(0));
  const urls: string[] = [];
  for (const scheme of args.length > 0 ? args : ['tcp']) {
    const start = starters[scheme];
    if (start === undefined) throw new Error(`unknown scheme ${scheme} (known: ${Object.keys(starters).join(', ')})`);
    urls.push(await start(pem, unixPath));
  }
  process.stdout.write(`${[...urls, 'ready'].join('\n')}\n`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
