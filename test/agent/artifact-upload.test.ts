// Artifacts end to end (PROTOCOL.md section 8): a real agent runs a job that leaves a 64 MiB file,
// and uploads it to a real plane through a TCP proxy that cuts the connection twice mid-transfer
// (on byte counts, not on time). Each time the agent resumes with the same artifact_id from the
// plane's `received`; the plane stores the file once, its digest checked, the result lists it,
// and the API serves it back identical, whole and by `Range`. The plane keeps its default byte
// rate (10 MiB/s): stored chunks are paced by the window, not cut off by the rate limit.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import type { EnvelopeOf } from '../../protocol/messages.js';
import type { JobAnswer } from '../../supervisor/admin/wire-types.js';
import '../../transports/builtin.js';
import { TcpProxy } from '../supervisor/cluster/tcp-proxy.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

let p: SecurityPlane;
let proxy: TcpProxy;
let agent: Agent;
let source: string;
let bytes: Buffer;
let digest: string;

beforeAll(async () => {
  p = await startSecurityPlane();
  proxy = await TcpProxy.start(Number(new URL(p.tcpUrl).port));
  source = mkdtempSync(join(os.tmpdir(), 'muster-artifact-src-'));
  bytes = randomBytes(SIZE);
  digest = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(source, 'big.bin'), bytes);
  writeFileSync(join(source, 'notes.txt'), 'release notes\n');
  const workDir = mkdtempSync(join(os.tmpdir(), 'muster-artifact-agent-'));
  agent = startAgent({
    urls: [`tcp://127.0.0.1:${proxy.port}`],
    token: await p.registrationToken(),
    workDir,
    logger: pino({ level: 'silent' }),
    backoff: { baseMs: 10, capMs: 50 },
  });
  await new Promise((resolve) => agent.events.once('registered', resolve));
});

afterAll(async () => {
  await agent?.stop();
  await proxy?.close();
  await p?.stop();
  rmSync(source, { recursive: true, force: true });
});

/** The job's end, heard on the plane's bus. */
function ended(jobId: string): Promise<string> {
  return new Promise((resolve) => {
    const stop = p.plane.bus.subscribe((event) => {
      if (event.kind === 'job' && event.job_id === jobId && ['Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered'].includes(event.state)) {
        stop();
        resolve(event.state);
      }
    });
  });
}

describe('an artifact uploaded through a connection cut twice', () => {
  it('resumes from received each time, is stored once, digest checked, and downloads identical', async () => {
    // What the plane saw: each ArtifactStart, and the offset of the first chunk after it.
    const starts: { id: string; firstOffset?: number }[] = [];
    let peakRss = 0;
    const rssBefore = process.memoryUsage().rss;
    p.plane.messages.add('ArtifactStart', (m: EnvelopeOf<'ArtifactStart'>) => starts.push({ id: m.data.artifact_id }));
    p.plane.messages.add('ArtifactChunk', (m: EnvelopeOf<'ArtifactChunk'>) => {
      const last = starts.at(-1);
      if (last !== undefined && last.firstOffset === undefined) last.firstOffset = m.data.offset;
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    });
    const operator = await p.apiToken('operator');
    const submitted = await p.http('POST', '/v1/jobs', operator, {
      job: { command: ['sh', '-c', `cp ${join(source, 'big.bin')} . && mkdir dist && cp ${join(source, 'notes.txt')} dist/`], artifacts: [{ path: '*.bin' }, { path: 'dist/*.txt', name: 'NOTES' }] },
    });
    expect(submitted.status).toBe(201);
    const jobId = (submitted.json as { job_id: string }).job_id;
    const end = ended(jobId);
    const baseline = proxy.upstreamBytes;

    // Cut once a quarter is through, and again past the half, each on the bytes that passed.
    await proxy.afterUpstream(SIZE / 4 - (proxy.upstreamBytes - baseline));
    proxy.cut();
    proxy.heal();
    await proxy.afterUpstream(SIZE / 3);
    proxy.cut();
    proxy.heal();
    expect(await end).toBe('Completed');

    const viewer = await p.apiToken('viewer');
    // Started three times, always the same artifact, resumed past 0 after each cut.
    const bigStarts = starts.filter((s) => s.id === starts[0]?.id);
    expect(bigStarts.length).toBeGreaterThanOrEqual(3);
    for (const resumed of bigStarts.slice(1)) expect(resumed.firstOffset ?? 0).toBeGreaterThan(0);
    // Less went through than a restart from 0 would have needed after each cut.
    expect(proxy.upstreamBytes - baseline).toBeLessThan(SIZE + SIZE / 2);
    // Memory stayed flat: nothing held the whole file (the plane and the agent run in this process).
    expect(peakRss - rssBefore).toBeLessThan(SIZE);

    // Stored once: one record per artifact, nothing left among the uploads.
    const list = await p.http('GET', `/v1/jobs/${jobId}/artifacts`, viewer);
    expect(list.status).toBe(200);
    const records = list.json as { artifact_id: string; attempt: number; name: string; size: number; sha256: string }[];
    expect(records.map((r) => r.name).sort()).toEqual(['NOTES', 'big.bin']);
    const big = records.find((r) => r.name === 'big.bin')!;
    expect(big).toMatchObject({ attempt: 1, size: SIZE, sha256: digest, artifact_id: starts[0]?.id });
    expect(readdirSync(join(p.dataDir, 'artifacts', 'uploads'))).toEqual([]);
    expect(readdirSync(join(p.dataDir, 'artifacts', 'jobs', jobId, '1')).filter((f) => !f.endsWith('.json'))).toHaveLength(2);

    // The result lists what was stored.
    const job = (await p.http('GET', `/v1/jobs/${jobId}`, viewer)).json as JobAnswer;
    expect(job.result?.artifacts).toEqual(expect.arrayContaining([{ artifact_id: big.artifact_id, name: 'big.bin', size: SIZE, sha256: digest }]));

    // Downloaded identical, streamed.
    const whole = await fetch(`${p.plane.httpUrl}/v1/jobs/${jobId}/artifacts/big.bin`, { headers: { authorization: `Bearer ${viewer}` } });
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-length')).toBe(String(SIZE));
    const hash = createHash('sha256');
    for await (const chunk of whole.body!) hash.update(chunk);
    expect(hash.digest('hex')).toBe(digest);

    // A range, the last bytes, and one past the end.
    const ranged = await fetch(`${p.plane.httpUrl}/v1/jobs/${jobId}/artifacts/big.bin`, { headers: { authorization: `Bearer ${viewer}`, range: 'bytes=1000-1999' } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe(`bytes 1000-1999/${SIZE}`);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(1000, 2000))).toBe(true);
    const tail = await fetch(`${p.plane.httpUrl}/v1/jobs/${jobId}/artifacts/big.bin`, { headers: { authorization: `Bearer ${viewer}`, range: 'bytes=-10' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(bytes.subarray(SIZE - 10))).toBe(true);
    const past = await fetch(`${p.plane.httpUrl}/v1/jobs/${jobId}/artifacts/big.bin`, { headers: { authorization: `Bearer ${viewer}`, range: `bytes=${SIZE}-` } });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${SIZE}`);
    const notes = await p.http('GET', `/v1/jobs/${jobId}/artifacts/NOTES?attempt=1`, viewer);
    expect(notes.text).toBe('release notes\n');
    expect((await p.http('GET', `/v1/jobs/${jobId}/artifacts/NOTES?attempt=2`, viewer)).status).toBe(404);
  }, 120_000);

  it('uploads as base64 from an agent that speaks JSON, and a job whose patterns match nothing ends with no artifacts', async () => {
    const workDir = mkdtempSync(join(os.tmpdir(), 'muster-artifact-json-'));
    const json = startAgent({ urls: [p.tcpUrl], token: await p.registrationToken(), workDir, logger: pino({ level: 'silent' }), codec: 'json', tags: { codec: 'json' } });
    try {
      await new Promise((resolve) => json.events.once('registered', resolve));
      const operator = await p.apiToken('operator');
      const viewer = await p.apiToken('viewer');
      const submit = async (command: string, artifacts: { path: string }[]): Promise<string> => {
        const answer = await p.http('POST', '/v1/jobs', operator, { job: { command: ['sh', '-c', command], artifacts }, selector: { tags: { codec: 'json' } } });
        return (answer.json as { job_id: string }).job_id;
      };
      const withFile = await submit(`head -c 700000 ${join(source, 'big.bin')} > part.bin`, [{ path: 'part.bin' }]);
      expect(await ended(withFile)).toBe('Completed');
      const got = await fetch(`${p.plane.httpUrl}/v1/jobs/${withFile}/artifacts/part.bin`, { headers: { authorization: `Bearer ${viewer}` } });
      expect(Buffer.from(await got.arrayBuffer()).equals(bytes.subarray(0, 700000))).toBe(true);
      const none = await submit('true', [{ path: 'missing/*.bin' }]);
      expect(await ended(none)).toBe('Completed');
      expect((await p.http('GET', `/v1/jobs/${none}/artifacts`, viewer)).json).toEqual([]);
      expect(((await p.http('GET', `/v1/jobs/${none}`, viewer)).json as JobAnswer).result?.artifacts).toEqual([]);
    } finally {
      await json.stop();
      rmSync(workDir, { recursive: true, force: true });
    }
  }, 60_000);
});
