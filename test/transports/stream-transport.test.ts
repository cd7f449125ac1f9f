// The stream transports over real sockets: TCP on port 0 and a Unix socket in a temp dir run
// the transport contract (transport-contract.ts), then what only each of them does: the TCP
// connect timeout, and the Unix socket file's life.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import '../../transports/builtin.js';
import { transportFor, type Connection, type TransportServer } from '../../transports/transport.js';
import type { RawStreamLink } from '../conformance/raw-links.js';
import { transportContract } from './transport-contract.js';

const MAX_FRAME = 64 * 1024;
const SEND_LIMIT = 64 * 1024;

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-stream-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

transportContract({
  name: 'tcp',
  kind: 'stream',
  listenUrl: () => 'tcp://127.0.0.1:0',
  urlPattern: /^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/,
  acceptedAddress: /^127\.0\.0\.1:\d+$/,
  dialedAddress: (url) => url.host,
  sendLimit: SEND_LIMIT,
  carriesEncryptedCodecBytes: true,
  byteStream: true,
  refusedDial: /connect to tcp:.* failed/,
  vanish: (link) => (link as RawStreamLink).socket.resetAndDestroy(), // an RST, as from a crashed host
});

transportContract({
  name: 'unix',
  kind: 'stream',
  listenUrl: () => `unix://${path.join(tmpDir, `s-${Math.random().toString(36).slice(2, 8)}.sock`)}`,
  urlPattern: /^unix:\/\/\/.*\.sock$/,
  acceptedAddress: /^\/.*\.sock$/,
  dialedAddress: (url) => decodeURIComponent(url.pathname),
  sendLimit: SEND_LIMIT,
  carriesEncryptedCodecBytes: true,
  byteStream: true,
  refusedDial: /connect to unix:.* failed/,
  // Unix sockets have no reset: the raw link's destroy is the abrupt exit.
});

const DIAL_OPTIONS = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, connectTimeoutMs: 5_000 };
const dial = (url: URL, connectTimeoutMs = 5_000): Promise<Connection> =>
  transportFor(url).dial(url, { ...DIAL_OPTIONS, connectTimeoutMs });

describe('tcp transport dialing', () => {
  it('rejects a URL without a port', async () => {
    await expect(dial(new URL('tcp://127.0.0.1'))).rejects.toThrow(/host:port/);
  });

  // A listener with a full backlog that never accepts makes the kernel drop further SYNs, so the
  // connect hangs. Node always accepts, hence a tiny Python listener when Python is there.
  const python = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p));
  const pythonListener = [
    'import socket, time',
    "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)",
    'print(s.getsockname()[1], flush=True)',
    'time.sleep(60)',
  ].join('\n');

  it.skipIf(python === undefined)('gives up after connectTimeoutMs with an Error', async () => {
    const child = spawn(python!, ['-c', pythonListener], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const port = Number(line.toString().trim());
      const fillers = [0, 1, 2].map(() => net.connect({ host: '127.0.0.1', port }).on('error', () => {}));
      try {
        await expect(dial(new URL(`tcp://127.0.0.1:${port}`), 300)).rejects.toThrow(/timed out after 300 ms/);
      } finally {
        for (const f of fillers) f.destroy();
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('unix transport socket file', () => {
  const listenAt = (url: string): Promise<TransportServer> =>
    transportFor(new URL(url)).listen(new URL(url), {
      maxFrameBytes: MAX_FRAME,
      maxSendBufferBytes: SEND_LIMIT,
      onConnection: (c) => void c.close(),
    });

  it('removes the socket file on close', async () => {
    const file = path.join(tmpDir, 'close.sock');
    const server = await listenAt(`unix://${file}`);
    expect(fs.statSync(file).isSocket()).toBe(true);
    await server.close();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('replaces a stale socket file left by a killed process', async () => {
    const file = path.join(tmpDir, 'stale.sock');
    const script = "require('net').createServer().listen(process.argv[1], () => console.log('up'))";
    const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
    expect(fs.statSync(file).isSocket()).toBe(true); // left behind, nobody listening

    const server = await listenAt(`unix://${file}`);
    const conn = await dial(new URL(server.url));
    await conn.close();
    await server.close();
  });

  it('refuses a path where another server listens, or that is not a socket', async () => {
    const live = path.join(tmpDir, 'live.sock');
    const first = await listenAt(`unix://${live}`);
    await expect(listenAt(`unix://${live}`)).rejects.toThrow(/another process is listening/);
    await first.close();

    const plain = path.join(tmpDir, 'plain.txt');
    fs.writeFileSync(plain, 'keep me');
    await expect(listenAt(`unix://${plain}`)).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(plain, 'utf8')).toBe('keep me');
  });

  it('rejects a URL that is not an absolute path', async () => {
    await expect(listenAt('unix://relative/x.sock')).rejects.toThrow(/unix:\/\/\/absolute\/path/);
  });

  it('round-trips a path with a space and a # through its URL', async () => {
    const file = path.join(tmpDir, 'with space #1.sock');
    const server = await listenAt(`unix://${encodeURI(file).replace('#', '%23')}`);
    expect(decodeURIComponent(new URL(server.url).pathname)).toBe(file);
    const conn = await dial(new URL(server.url));
    await conn.close();
    await server.close();
  });
});
