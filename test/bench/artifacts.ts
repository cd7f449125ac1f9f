// `npm run bench -- artifacts`: artifact upload throughput (PROTOCOL.md section 8) beside a raw
// copy of the same bytes over the same kind of socket, in the same run.
//
//   plane   the agent's own uploader (agent/artifact-upload.ts) sends a file of BENCH_ARTIFACT_MIB
//           (default 256) MiB over one TCP connection to `muster serve` in another process, in
//           MessagePack chunks of 256 KiB under the 4 MiB window; the plane decodes, validates,
//           hashes and writes each chunk, fsyncs the file and checks its sha256 before the last
//           Ack. Timed from ArtifactStart to the `complete` Ack; a hashing pass over the file
//           (what the agent does before it starts) is timed apart.
//   raw     the same file piped over a plain TCP socket to a sink process that writes it to a
//           file and fsyncs it, then answers: the ceiling of a socket and a disk on this machine.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { ArtifactUploads, type UploadLink } from '../../agent/artifact-upload.js';
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { mintApiToken, mintNodeToken, registerNode } from './bench-node.js';
import { startPlane } from './processes.js';
import { statusKiB } from './proc-stats.js';

const MIB = Number(process.env.BENCH_ARTIFACT_MIB ?? 256);
const RUNS = 3;
const MiB = 1024 * 1024;

export async function runArtifacts(): Promise<void> {
  console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);
  console.log(`artifact: ${MIB} MiB of random bytes, runs: ${RUNS} (medians)\n`);
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-artifacts-'));
  const file = join(dir, 'artifact.bin');
  await writeRandom(file, MIB * MiB);
  const plane = await startPlane({ MUSTER_HEARTBEAT_INTERVAL_MS: '60000', MUSTER_MAX_ARTIFACT_BYTES: String(4 * MIB * MiB) }, { logLevel: 'warn' });
  const sink = await startSink(dir);
  const rssBefore = statusKiB(plane.pid, 'VmRSS');
  try {
    const planeRuns: { uploadMs: number; hashMs: number }[] = [];
    const rawRuns: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      planeRuns.push(await upload(plane, file, run));
      rawRuns.push(await rawCopy(sink.port, file));
    }
    const upload50 = median(planeRuns.map((r) => r.uploadMs));
    const hash50 = median(planeRuns.map((r) => r.hashMs));
    const raw50 = median(rawRuns);
    const rate = (ms: number): string => `${((MIB * 1000) / ms).toFixed(0).padStart(5)} MiB/s`;
    console.log(`plane upload (MessagePack, 256 KiB chunks, 4 MiB window)  ${rate(upload50)}   (${upload50.toFixed(0)} ms)`);
    console.log(`agent's sha256 pass before the upload                     ${rate(hash50)}   (${hash50.toFixed(0)} ms)`);
    console.log(`raw TCP copy to a file, fsynced                           ${rate(raw50)}   (${raw50.toFixed(0)} ms)`);
    console.log(`plane/raw ${(raw50 / upload50).toFixed(2)}`);
    // Memory stays flat: the plane's peak resident size beside its size before the first upload.
    console.log(`plane RSS before ${(rssBefore / 1024).toFixed(0)} MiB, peak ${(statusKiB(plane.pid, 'VmHWM') / 1024).toFixed(0)} MiB`);
  } finally {
    await sink.stop();
    await plane.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function writeRandom(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  for (let left = bytes; left > 0; left -= 4 * MiB) {
    if (!out.write(randomBytes(Math.min(4 * MiB, left)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/** One upload through the plane: a node with `artifacts`, a job placed on it, the file sent as that job's artifact. */
async function upload(plane: Awaited<ReturnType<typeof startPlane>>, file: string, run: number): Promise<{ uploadMs: number; hashMs: number }> {
  const codec = CODEC_MSGPACK;
  const node = await registerNode(plane.tcpUrl, codec, await mintNodeToken(plane.dataDir, 600), { wireFeatures: ['artifacts'], hostname: `bench-artifacts-${run}` });
  try {
    const assignment = node.socket.next((e) => e.type === 'JobAssignment', 30_000);
    const api = await mintApiToken(plane.dataDir, 'operator', 600);
    const res = await fetch(`${plane.httpUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${api}`, 'content-type': 'application/json' },
      body: JSON.stringify({ job: { command: ['true'] } }),
    });
    if (res.status !== 201) throw new Error(`submit refused: ${res.status} ${await res.text()}`);
    const a = await assignment;
    const jobId = String(a.data.job_id);
    const attempt = Number(a.data.attempt);
    await node.socket.write(encodeFrame(codec, encodeBody(codec, { type: 'JobAccepted', data: { job_id: jobId, attempt } })));
    let n = 0;
    // The upload proper: from its ArtifactStart to the `complete` Ack.
    let startedAt = 0;
    let completeAt = 0;
    const link: UploadLink = {
      isClosed: false,
      send: (type, data) => {
        if (type === 'ArtifactStart') startedAt = performance.now();
        const id = `b-${n++}`;
        node.socket.socket.write(encodeFrame(codec, encodeBody(codec, { type, id, data })));
        return id;
      },
    };
    const uploads = new ArtifactUploads({ logger: pino({ level: 'silent' }), binary: true });
    node.socket.onMessage = (e) => {
      if (e.type === 'ArtifactAck' && e.data.complete === true) completeAt = performance.now();
      if (e.type === 'ArtifactAck') uploads.onAck(e.data as never);
      else if (e.type === 'Error') uploads.onError(e.data as never, e.reply_to);
    };
    uploads.linkUp(link, 4 * MiB);
    const hashStarted = performance.now();
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    hash.digest('hex');
    const hashMs = performance.now() - hashStarted;
    const stored = await uploads.uploadAll(jobId, attempt, '/', [{ path: file.slice(1), name: `run-${run}.bin`, size: MIB * MiB }]);
    if (stored.length !== 1) throw new Error('the plane did not store the artifact');
    return { uploadMs: completeAt - startedAt, hashMs };
  } finally {
    node.socket.close();
  }
}

/** A sink process: each connection's bytes to a file, fsynced, then `ok` back. */
async function startSink(dir: string): Promise<{ port: number; stop(): Promise<void> }> {
  const script = `
    const net = require('node:net'); const fs = require('node:fs'); let n = 0;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      const path = ${JSON.stringify(dir)} + '/sink-' + (n++);
      const out = fs.createWriteStream(path);
      s.pipe(out);
      out.on('finish', () => { const fd = fs.openSync(path, 'r'); fs.fsyncSync(fd); fs.closeSync(fd); fs.rmSync(path); s.end('ok'); });
    });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => createInterface({ input: child.stdout }).once('line', (line) => resolve(Number(line))));
  return {
    port,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function rawCopy(port: number, file: string): Promise<number> {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise((resolve) => socket.once('connect', resolve));
  const answered = new Promise((resolve) => socket.once('data', resolve));
  const started = performance.now();
  for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
    if (!socket.write(chunk as Buffer)) await new Promise<void>((r) => socket.once('drain', () => r()));
  }
  socket.end();
  await answered;
  const ms = performance.now() - started;
  socket.destroy();
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
