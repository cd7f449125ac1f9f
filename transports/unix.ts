// The `unix` transport: stream frames over a Unix domain socket (`unix:///abs/path`).
// A socket file left behind by a dead process is removed before listening; a live
// listener or a file that is not a socket is never touched. The socket is created mode 0600.
// Registers its scheme on import.
import { connect, createServer } from 'node:net';
import { lstat, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { connectStream } from './stream-connection.js';
import { listenStream } from './stream-server.js';
import {
  registerTransport,
  type Connection,
  type DialOptions,
  type ListenOptions,
  type Transport,
  type TransportServer,
} from './transport.js';

/** The absolute socket path of a `unix:///abs/path` URL; throws a plain Error otherwise. */
export function unixPath(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  if (url.host !== '' || !path.startsWith('/') || path === '/') {
    throw new Error(`${url.href}: expected unix:///absolute/path`);
  }
  return path;
}

/** `unix:///abs/path` for a path, escaped so that `unixPath` reads it back. */
export function unixUrl(path: string): string {
  return `unix://${path.split('/').map(encodeURIComponent).join('/')}`;
}

export const unixTransport: Transport = {
  schemes: ['unix'],

  async listen(url: URL, options: ListenOptions): Promise<TransportServer> {
    const path = unixPath(url);
    await removeStaleSocket(path);
    return listenStream(
      {
        server: createServer(),
        bind: { path },
        url: () => unixUrl(path),
        peerAddress: () => path, // the client end of a Unix socket has no name
        cleanup: () => rmSync(path, { force: true }),
        // 0600: only the plane's user may connect, as for the data directory (README, Security).
        bindUmask: 0o177,
      },
      options,
    );
  },

  async dial(url: URL, options: DialOptions): Promise<Connection> {
    const path = unixPath(url);
    return connectStream(connect({ path }), { ...options, target: url.href, peerAddress: () => path });
  },
};

async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (stat === undefined) return;
  if (!stat.isSocket()) throw new Error(`cannot listen on ${path}: it exists and is not a socket`);
  if (await answers(path)) throw new Error(`cannot listen on ${path}: another process is listening there`);
  await rm(path, { force: true });
}

/** True when something accepts connections on the socket at `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

registerTransport(unixTransport);
