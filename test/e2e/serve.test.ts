// End to end, `muster serve` itself: a plane that cannot start says why in one line and exits 1,
// rather than hanging with the listeners it had already bound.
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Harness, runMuster } from './harness.js';

const h = new Harness();

afterAll(async () => {
  await h.close();
}, 30_000);

describe('muster serve', () => {
  it('exits 1 with one line on stderr when a listener port is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = taken.address() as net.AddressInfo;
      const dir = h.tempDir('muster-serve-');
      // The node listeners bind first and succeed; the admin API then fails.
      const args = ['serve', '--data-dir', dir, '--unix', join(dir, 'muster.sock'), '--tcp', '127.0.0.1:0'];
      const run = await runMuster([...args, '--http', `127.0.0.1:${port}`], { MUSTER_WS: 'off', MUSTER_GRPC: 'off' }, 20_000);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^muster: [^\n]*EADDRINUSE[^\n]*\n$/);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});
