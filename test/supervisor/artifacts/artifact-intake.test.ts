// The plane's side of artifacts (PROTOCOL.md section 8) against a raw protocol client over real
// TCP, byte for byte what a node written elsewhere would send: the Acks (after Start, each half
// window, after End), a chunk not at `received` answered with the right place and dropped, a
// resume on a new connection from what was stored, and every refusal (`artifact_rejected` with
// its `field`, what was stored dropped): a wrong digest, an end short of `size`, a size over
// `max_artifact_bytes`, an attempt the node does not hold, another node's upload. A job that
// lists artifacts is placed only on a node whose session turned `artifacts` on.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACT_WINDOW_BYTES } from '../../../supervisor/nodes/protocol-versions.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import type { CodecName } from '../../../protocol/codec.js';
import type { NodeClient } from '../node-client.js';
import { startSecurityPlane, type SecurityPlane } from '../security-plane.js';

const KiB = 1024;
const MAX_ARTIFACT_BYTES = 8 * 1024 * 1024;

let p: SecurityPlane;
beforeAll(async () => {
  p = await startSecurityPlane({ maxArtifactBytes: MAX_ARTIFACT_BYTES });
});
afterAll(async () => p?.stop());

interface Held {
  c: NodeClient;
  jobId: string;
  attempt: number;
}

/** A raw node with `artifacts` on, holding (accepted) a job placed on it by its tag. */
async function nodeWithJob(codec: CodecName = 'msgpack', artifacts = true): Promise<Held> {
  const tag = randomUUID();
  const c = await p.client();
  const ack = await c.register({ token: await p.registrationToken(), codec, protocolVersions: [1, 2], wireFeatures: artifacts ? ['artifacts'] : [], tags: { node: tag } });
  expect(ack.data.wire_features).toEqual(artifacts ? ['artifacts'] : []);
  const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags: { node: tag } } }, p.plane.api.defaults));
  const assignment = await c.next('JobAssignment');
  c.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: assignment.message.data.attempt } }, codec);
  return { c, jobId: job.job_id, attempt: assignment.message.data.attempt };
}

function start(h: Held, bytes: Buffer, o: { id?: string; artifactId?: string; sha256?: string; size?: number; name?: string; attempt?: number; jobId?: string } = {}) {
  return {
    type: 'ArtifactStart',
    id: o.id ?? 'start',
    data: {
      job_id: o.jobId ?? h.jobId,
      attempt: o.attempt ?? h.attempt,
      artifact_id: o.artifactId ?? randomUUID(),
      name: o.name ?? 'out.bin',
      size: o.size ?? bytes.length,
      sha256: o.sha256 ?? createHash('sha256').update(bytes).digest('hex'),
    },
  };
}

function chunk(artifactId: string, offset: number, data: Buffer, codec: CodecName = 'msgpack', id = `c-${offset}`) {
  return { type: 'ArtifactChunk', id, data: { artifact_id: artifactId, offset, data: codec === 'json' ? data.toString('base64') : data } };
}

function uploadsDir(): string[] {
  const dir = join(p.dataDir, 'artifacts', 'uploads');
  return existsSync(dir) ? readdirSync(dir) : [];
}

describe('artifact intake', () => {
  it('acks after Start, each half window, and after End; a chunk off its place gets the right place and is dropped', async () => {
    const h = await nodeWithJob();
    const bytes = randomBytes(ARTIFACT_WINDOW_BYTES + 100 * KiB);
    const s = start(h, bytes);
    const id = s.data.artifact_id;
    h.c.send(s, 'msgpack');
    expect((await h.c.next('ArtifactAck')).message).toMatchObject({ reply_to: 'start', data: { artifact_id: id, received: 0, complete: false } });
    // Off its place (ahead of `received`): an Ack with the right place; nothing stored.
    h.c.send(chunk(id, 256 * KiB, bytes.subarray(256 * KiB, 512 * KiB), 'msgpack', 'ahead'), 'msgpack');
    expect((await h.c.next('ArtifactAck')).message).toMatchObject({ reply_to: 'ahead', data: { received: 0, complete: false } });
    // In order: the first Ack after half a window was stored.
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(256 * KiB, bytes.length - offset);
      h.c.send(chunk(id, offset, bytes.subarray(offset, offset + n)), 'msgpack');
      offset += n;
    }
    const half = await h.c.next('ArtifactAck');
    expect(half.message.data).toMatchObject({ received: ARTIFACT_WINDOW_BYTES / 2, complete: false });
    expect((await h.c.next('ArtifactAck')).message.data).toMatchObject({ received: ARTIFACT_WINDOW_BYTES, complete: false });
    // A repeat of a stored chunk (behind `received`): also answered with the place, and dropped.
    h.c.send(chunk(id, 0, bytes.subarray(0, 256 * KiB), 'msgpack', 'behind'), 'msgpack');
    expect((await h.c.next('ArtifactAck')).message).toMatchObject({ reply_to: 'behind', data: { received: bytes.length, complete: false } });
    h.c.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: id } }, 'msgpack');
    expect((await h.c.next('ArtifactAck')).message).toMatchObject({ reply_to: 'end', data: { artifact_id: id, received: bytes.length, complete: true } });
    const download = await fetch(`${p.plane.httpUrl}/v1/jobs/${h.jobId}/artifacts/out.bin`, { headers: { authorization: `Bearer ${await p.apiToken('viewer')}` } });
    expect(Buffer.from(await download.arrayBuffer()).equals(bytes)).toBe(true);
  });

  it('takes base64 chunks from a JSON node, and goes on from what was stored when the node comes back on a new connection', async () => {
    const h = await nodeWithJob('json');
    const bytes = randomBytes(300 * KiB);
    const s = start(h, bytes);
    const id = s.data.artifact_id;
    h.c.send(s, 'json');
    await h.c.next('ArtifactAck');
    h.c.send(chunk(id, 0, bytes.subarray(0, 200 * KiB), 'json'), 'json');
    // The connection drops; the node resumes its session and starts the upload again.
    const token = h.c.sessionToken!;
    const nodeId = h.c.nodeId!;
    // What it sent before the drop is stored before the plane takes the next Start (in order, on the upload).
    await h.c.close();
    const again = await p.client();
    await again.register({ token, codec: 'json', protocolVersions: [1, 2], wireFeatures: ['artifacts'], resume: { node_id: nodeId, running_jobs: [h.jobId], unacked_results: [] } });
    again.send({ ...s, id: 'resume' }, 'json');
    const resumed = await again.next('ArtifactAck');
    expect(resumed.message).toMatchObject({ reply_to: 'resume', data: { received: 200 * KiB, complete: false } });
    again.send(chunk(id, 200 * KiB, bytes.subarray(200 * KiB), 'json'), 'json');
    again.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: id } }, 'json');
    expect((await again.next('ArtifactAck')).message.data).toMatchObject({ received: bytes.length, complete: true });
    // A Start repeated after completion (its Ack lost) is told it is complete; nothing is stored twice.
    again.send({ ...s, id: 'repeat' }, 'json');
    expect((await again.next('ArtifactAck')).message).toMatchObject({ reply_to: 'repeat', data: { received: bytes.length, complete: true } });
    const list = (await p.http('GET', `/v1/jobs/${h.jobId}/artifacts`, await p.apiToken('viewer'))).json as unknown[];
    expect(list).toEqual([{ artifact_id: id, attempt: h.attempt, name: 'out.bin', size: bytes.length, sha256: s.data.sha256 }]);
  });

  it('rejects bytes that do not match the sha256, and drops what was stored', async () => {
    const h = await nodeWithJob();
    const bytes = randomBytes(64 * KiB);
    const s = start(h, bytes, { sha256: createHash('sha256').update('something else').digest('hex') });
    h.c.send(s, 'msgpack');
    await h.c.next('ArtifactAck');
    h.c.send(chunk(s.data.artifact_id, 0, bytes), 'msgpack');
    h.c.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: s.data.artifact_id } }, 'msgpack');
    expect((await h.c.next('Error')).message).toMatchObject({ reply_to: 'end', data: { code: 'artifact_rejected', field: 'data.sha256', fatal: false } });
    expect(uploadsDir().filter((f) => f.startsWith(s.data.artifact_id))).toEqual([]);
    expect((await p.http('GET', `/v1/jobs/${h.jobId}/artifacts`, await p.apiToken('viewer'))).json).toEqual([]);
    // The upload is gone: a chunk for it is refused too.
    h.c.send(chunk(s.data.artifact_id, 0, bytes, 'msgpack', 'late'), 'msgpack');
    expect((await h.c.next('Error')).message).toMatchObject({ reply_to: 'late', data: { code: 'artifact_rejected', field: 'data.artifact_id' } });
  });

  it('rejects an end short of the size, and a size over max_artifact_bytes', async () => {
    const h = await nodeWithJob();
    const bytes = randomBytes(64 * KiB);
    const s = start(h, bytes);
    h.c.send(s, 'msgpack');
    await h.c.next('ArtifactAck');
    h.c.send(chunk(s.data.artifact_id, 0, bytes.subarray(0, 1000)), 'msgpack');
    h.c.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: s.data.artifact_id } }, 'msgpack');
    expect((await h.c.next('Error')).message).toMatchObject({ reply_to: 'end', data: { code: 'artifact_rejected', field: 'data.size' } });
    expect(uploadsDir().filter((f) => f.startsWith(s.data.artifact_id))).toEqual([]);
    h.c.send(start(h, bytes, { id: 'huge', size: MAX_ARTIFACT_BYTES + 1, name: 'huge.bin' }), 'msgpack');
    expect((await h.c.next('Error')).message).toMatchObject({ reply_to: 'huge', data: { code: 'artifact_rejected', field: 'data.size' } });
  });

  it('rejects an upload for an attempt the node does not hold, and leaves another node\'s upload alone', async () => {
    const a = await nodeWithJob();
    const b = await nodeWithJob();
    const bytes = randomBytes(32 * KiB);
    // B names A's job and attempt: not its attempt.
    b.c.send(start(a, bytes, { id: 'foreign' }), 'msgpack');
    expect((await b.c.next('Error')).message).toMatchObject({ reply_to: 'foreign', data: { code: 'artifact_rejected', field: 'data.attempt' } });
    // A's upload under way; B sends a chunk for it (its id learnt somehow): refused, A's upload unharmed.
    const s = start(a, bytes);
    a.c.send(s, 'msgpack');
    await a.c.next('ArtifactAck');
    b.c.send(chunk(s.data.artifact_id, 0, bytes, 'msgpack', 'theirs'), 'msgpack');
    expect((await b.c.next('Error')).message).toMatchObject({ reply_to: 'theirs', data: { code: 'artifact_rejected', field: 'data.artifact_id' } });
    a.c.send(chunk(s.data.artifact_id, 0, bytes), 'msgpack');
    a.c.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: s.data.artifact_id } }, 'msgpack');
    expect((await a.c.next('ArtifactAck')).message.data).toMatchObject({ complete: true });
    // Once the attempt is no longer current (the job was cancelled and ended), a new upload for it is refused.
    await p.plane.api.cancelJob(a.jobId);
    await a.c.next('CancelJob');
    a.c.send({ type: 'JobResult', id: 'r', data: jobResult(a) }, 'msgpack');
    await a.c.next('JobResultAck');
    a.c.send(start(a, bytes, { id: 'late', name: 'late.bin' }), 'msgpack');
    expect((await a.c.next('Error')).message).toMatchObject({ reply_to: 'late', data: { code: 'artifact_rejected', field: 'data.attempt' } });
  });

  it('places a job that lists artifacts only on a node whose session turned artifacts on', async () => {
    const tag = randomUUID();
    const without = await p.client();
    await without.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: [], tags: { pool: tag } });
    const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'], artifacts: [{ path: 'dist/*' }] }, selector: { tags: { pool: tag } } }, p.plane.api.defaults));
    await p.plane.api.getJob(job.job_id);
    expect((await p.http('GET', `/v1/jobs/${job.job_id}`, await p.apiToken('viewer'))).json).toMatchObject({ state: 'Queued', waiting_for: 'no_matching_node' });
    const withIt = await p.client();
    await withIt.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: ['artifacts'], tags: { pool: tag } });
    const assignment = await withIt.next('JobAssignment');
    expect(assignment.message.data).toMatchObject({ job_id: job.job_id, job: { artifacts: [{ path: 'dist/*' }] } });
    expect(without.unread().map((r) => r.message.type)).not.toContain('JobAssignment');
  });
});

function jobResult(h: Held) {
  const now = new Date().toISOString();
  return {
    job_id: h.jobId,
    attempt: h.attempt,
    node_id: h.c.nodeId,
    result: { status: 'Cancelled', exit_code: null, stdout: '', stderr: '', artifacts: [], started_at: now, completed_at: now },
    metrics: { duration_ms: 1, cpu_time_ms: 0, memory_peak_mb: 0 },
  };
}

describe('artifact chunks and the node byte rate', () => {
  it('does not charge stored chunks to the byte rate: an upload far past it goes through, paced by the window', async () => {
    // 1 MiB/s, with a burst just over the window: without the refund, 16 MiB in a few hundred ms would be rate_limited.
    const slow = await startSecurityPlane({ nodeByteRate: 1024 * 1024, nodeByteBurst: ARTIFACT_WINDOW_BYTES + 1024 * 1024 });
    try {
      const tag = randomUUID();
      const c = await slow.client();
      await c.register({ token: await slow.registrationToken(), codec: 'msgpack', protocolVersions: [1, 2], wireFeatures: ['artifacts'], tags: { node: tag } });
      const job = await slow.plane.api.submitJob(toNewJob({ job: { command: ['true'] }, selector: { tags: { node: tag } } }, slow.plane.api.defaults));
      const { message } = await c.next('JobAssignment');
      c.send({ type: 'JobAccepted', data: { job_id: job.job_id, attempt: message.data.attempt } }, 'msgpack');
      const bytes = randomBytes(16 * 1024 * 1024);
      const s = start({ c, jobId: job.job_id, attempt: message.data.attempt }, bytes);
      c.send(s, 'msgpack');
      let acked = (await c.next('ArtifactAck')).message.data.received;
      let sent = 0;
      while (sent < bytes.length) {
        // Never more than the window out unacknowledged, as a node must.
        while (sent < bytes.length && sent + 256 * KiB - acked <= ARTIFACT_WINDOW_BYTES) {
          c.send(chunk(s.data.artifact_id, sent, bytes.subarray(sent, sent + 256 * KiB)), 'msgpack');
          sent += 256 * KiB;
        }
        if (sent < bytes.length) acked = (await c.next('ArtifactAck')).message.data.received;
      }
      c.send({ type: 'ArtifactEnd', id: 'end', data: { artifact_id: s.data.artifact_id } }, 'msgpack');
      // Every Ack until the complete one; an Error (rate_limited) in between fails the wait.
      for (;;) {
        const ack = (await c.next('ArtifactAck')).message.data;
        if (ack.complete) break;
      }
    } finally {
      await slow.stop();
    }
  });
});
