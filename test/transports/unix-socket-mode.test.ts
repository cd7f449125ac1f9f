// The Unix socket node listener is created mode 0600 (only the plane's user may connect), from
// the moment it exists: the mode comes from the umask while binding, not a chmod afterwards.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import '../../transports/builtin.js';
import { transportFor } from '../../transports/transport.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-unix-mode-'));

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it('creates the socket 0600 and leaves the process umask as it was', async () => {
  const umask = process.umask(0o022);
  try {
    const url = new URL(`unix://${path.join(dir, 'plane.sock')}`);
    const server = await transportFor(url).listen(url, {
      maxFrameBytes: 1024,
      maxSendBufferBytes: 1024,
      onConnection: (conn) => void conn.close(),
    });
    const stat = fs.statSync(path.join(dir, 'plane.sock'));
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    expect(process.umask()).toBe(0o022);
    await server.close();
  } finally {
    process.umask(umask);
  }
});
