// A log follow on a real plane (`muster serve`, a fake node over TCP): the chunks a node sends
// and the job's end reach the follower through the bus, with no poll to wait for.
import { afterAll, describe, expect, it } from 'vitest';
import { readSse } from '../../../cli/sse-reader.js';
import { Harness } from '../../e2e/harness.js';

const h = new Harness();
afterAll(() => h.close(), 60_000);

describe('GET /v1/jobs/{id}/logs?follow=1 on a real plane', () => {
  it('sends each chunk as the node sends it, and ends when the result is stored', async () => {
    const plane = await h.startPlane();
    const node = await h.fakeNode(plane.tcpUrl);
    await node.register({ token: await h.mintToken(plane.dataDir, 'node') });
    const jobId = await plane.api.submit({ job: { command: ['true'] } });
    await node.next('JobAssignment', (d) => d.job_id === jobId);
    node.send('JobAccepted', { job_id: jobId, attempt: 1 });
    const res = await fetch(`${plane.httpUrl}/v1/jobs/${jobId}/logs?follow=1`, {
      headers: { authorization: `Bearer ${plane.info.adminToken}` },
    });
    const events = readSse(res.body as ReadableStream<Uint8Array>);
    for (const [seq, data] of ['first\n', 'second\n'].entries()) {
      node.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq, data });
      const event = await events.next();
      expect(JSON.parse((event.value as { data: string }).data)).toMatchObject({ seq, data });
    }
    node.sendResult(jobId, 1);
    const end = await events.next();
    expect(end.value).toEqual({ event: 'end', data: JSON.stringify({ state: 'Completed' }) });
    expect((await events.next()).done).toBe(true);
  }, 60_000);
});
