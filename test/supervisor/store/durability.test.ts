// Nothing acknowledged is lost: a real `muster serve` killed with `kill -9` right after it sent a
// `JobResultAck` (and a `201` for a submission) has both writes in its store when it is reopened.
// A kill cannot lose what the OS already has; what FULL adds for a power loss is checked by the
// pragma test in group-commit.test.ts. This test holds the ordering: no acknowledgement leaves
// before its write is committed.
import { afterAll, describe, expect, it } from 'vitest';
import { storePath } from '../../../supervisor/store/sqlite-database.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { Harness } from '../../e2e/harness.js';

const h = new Harness();
afterAll(() => h.close(), 60_000);

describe('a plane killed with kill -9', () => {
  it('keeps the result it acknowledged and the job it answered 201 for', async () => {
    const plane = await h.startPlane();
    const node = await h.fakeNode(plane.tcpUrl);
    await node.register({ token: await h.mintToken(plane.dataDir, 'node') });
    const ran = await plane.api.submit({ job: { command: ['true'] } });
    await node.next('JobAssignment', (d) => d.job_id === ran);
    node.send('JobAccepted', { job_id: ran, attempt: 1 });
    node.sendResult(ran, 1, { stdout: 'acknowledged\n' });
    await node.next('JobResultAck', (d) => d.job_id === ran);
    // A job no node can take, so that it stays as submitted.
    const queued = await plane.api.submit({ job: { command: ['true'] }, selector: { runner_type: 'nowhere' } });
    plane.proc.kill9();
    await plane.proc.exited;

    const store = SqliteJobStore.open(storePath(plane.dataDir));
    try {
      expect(await store.get(ran)).toMatchObject({ state: 'Completed', attempt: 1, result: { stdout: 'acknowledged\n' } });
      expect(await store.get(queued)).toMatchObject({ state: 'Queued' });
    } finally {
      await store.close();
    }
  }, 60_000);
});
