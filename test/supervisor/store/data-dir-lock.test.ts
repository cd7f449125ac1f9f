// One `muster serve` per data directory, with real processes: a second plane on the directory of
// a running one exits 1, saying which process holds it, and touches nothing; once the first is
// killed (kill -9: no goodbye, no lock file cleaned up) a plane starts there at once and finds
// its jobs. The CLI still works beside a running plane.
import { afterAll, describe, expect, it } from 'vitest';
import { Harness, runMuster } from '../../e2e/harness.js';

const h = new Harness();
afterAll(() => h.close(), 30_000);

describe('the data directory lock', () => {
  it('refuses a second plane on a running plane’s data directory, and lets one start once that plane is killed', async () => {
    const first = await h.startPlane();
    const queued = await first.api.submit({ job: { command: ['true'] }, selector: { runner_type: 'nowhere' } });

    const second = await runMuster(['serve', '--data-dir', first.dataDir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--ws', 'off', '--grpc', 'off', '--unix', 'off'], {}, 20_000);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(
      `muster: the data directory ${first.dataDir} is in use by another muster serve (pid ${first.proc.child.pid}): stop it first, or give this plane a --data-dir of its own`,
    );
    // The CLI opens the store, not the lock: it works beside the running plane.
    const token = await runMuster(['token', 'create', '--role', 'viewer', '--data-dir', first.dataDir]);
    expect(token.code, token.stderr).toBe(0);

    first.proc.kill9();
    await first.proc.exited;
    const after = await first.restart();
    expect(await after.api.job(queued)).toMatchObject({ state: 'Queued' });
  }, 60_000);
});
