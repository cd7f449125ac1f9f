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
//   download  the stored artifact read back whole through `GET /v1/jobs/{id}/artifacts/{name}`.
// BENCH_ARTIFACT_CLUSTER=1 runs the plane as one cluster replica (`muster serve --nats`) on a
// nats-server started here (JetStream on disk, R1): artifacts go to the object store instead of
// the data directory, and nats-server's CPU is shown beside the plane's.
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
import { cpuSeconds, statusKiB } from './proc-stats.js';
import { makeSecret } from './cluster.js';
import { loadAverage } from './dispatch.js';
import { NatsServer } from '../cluster/nats-server.js';

const MIB = Number(process.env.BENCH_ARTIFACT_MIB ?? 256);
const CLUSTER = process.env.BENCH_ARTIFACT_CLUSTER === '1';
const RUNS = 3;
const MiB = 1024 * 1024;

export async function runArtifacts(): Promise<void> {
  console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; load average at start ${loadAverage()}`);
  console.log(`artifact: ${MIB} MiB of random bytes, runs: ${RUNS} (medians); plane: ${CLUSTER ? 'one cluster replica on a nats-server started here (object store, R1)' : 'embedded (data directory)'}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-artifacts-'));
  const file = join(dir, 'artifact.bin');
  await writeRandom(file, MIB * MiB);
  const secret = CLUSTER ? makeSecret() : undefined;
  const nats = CLUSTER ? await NatsServer.start() : undefined;
  const env = { MUSTER_HEARTBEAT_INTERVAL_MS: '60000', MUSTER_MAX_ARTIFACT_BYTES: String(4 * MIB * MiB) };
  const plane = await startPlane(secret === undefined || nats === undefined ? env : { ...env, MUSTER_JWT_SECRET: secret.text, MUSTER_NATS_URL: nats.url }, { logLevel: 'warn' });
  const tokens = secret?.dir ?? plane.dataDir;
  const sink = await startSink(dir);
  const rssBefore = statusKiB(plane.pid, 'VmRSS');
  try {
    const planeRuns: { uploadMs: number; hashMs: number; downloadMs: number }[] = [];
    const rawRuns: number[] = [];
    const cpu0 = { plane: cpuSeconds(plane.pid), nats: nats === undefined ? 0 : cpuSeconds(nats.pid) };
    for (let run = 0; run < RUNS; run++) {
      planeRuns.push(await upload(plane, tokens, file, run));
      rawRuns.push(await rawCopy(sink.port, file));
    }
    const upload50 = median(planeRuns.map((r) => r.uploadMs));
    const hash50 = median(planeRuns.map((r) => r.hashMs));
    const download50 = median(planeRuns.map((r) => r.downloadMs));
    const raw50 = median(rawRuns);
    const rate = (ms: number): string => `${((MIB * 1000) / ms).toFixed(0).padStart(5)} MiB/s`;
    console.log(`plane upload (MessagePack, 256 KiB chunks, 4 MiB window)  ${rate(upload50)}   (${upload50.toFixed(0)} ms)`);
    console.log(`agent's sha256 pass before the upload                     ${rate(hash50)}   (${hash50.toFixed(0)} ms)`);
    console.log(`raw TCP copy to a file, fsynced                           ${rate(raw50)}   (${raw50.toFixed(0)} ms)`);
    console.log(`plane download (GET /v1/jobs/{id}/artifacts/{name})       ${rate(download50)}   (${download50.toFixed(0)} ms)`);
    console.log(`plane/raw ${(raw50 / upload50).toFixed(2)}`);
    // CPU per MiB moved (each run uploads and downloads the artifact once): less skewed by load than the rates.
    const perMiB = (seconds: number): string => `${((seconds * 1000) / (RUNS * MIB)).toFixed(2)} ms CPU per MiB up and down`;
    console.log(`plane process ${perMiB(cpuSeconds(plane.pid) - cpu0.plane)}${nats === undefined ? '' : `, nats-server ${perMiB(cpuSeconds(nats.pid) - cpu0.nats)}`}`);
    // Memory stays flat: the plane's peak resident size beside its size before the first upload.
    console.log(`plane RSS before ${(rssBefore / 1024).toFixed(0)} MiB, peak ${(statusKiB(plane.pid, 'VmHWM') / 1024).toFixed(0)} MiB`);
    console.log(`load average at the end ${loadAverage()}`);
  } finally {
    await sink.stop();
    await plane.stop();
    await nats?.stop();
    if (secret !== undefined) rmSync(secret.dir, { recursive: true, force: true });
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
async function upload(plane: Awaited<ReturnType<typeof startPlane>>, tokens: string, file: string, run: number): Promise<{ uploadMs: number; hashMs: number; downloadMs: number }> {
  const codec = CODEC_MSGPACK;
  const node = await registerNode(plane.tcpUrl, codec, await mintNodeToken(tokens, 600), { wireFeatures: ['artifacts'], hostname: `bench-artifacts-${run}` });
  try {
    const assignment = node.socket.next((e) => e.type === 'JobAssignment', 30_000);
    const api = await mintApiToken(tokens, 'operator', 600);
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
    const downloadMs = await download(plane.httpUrl, api, jobId, `run-${run}.bin`);
    return { uploadMs: completeAt - startedAt, hashMs, downloadMs };
  } finally {
    node.socket.close();
  }
}

/** Reads the artifact back whole through the API; its time. */
async function download(httpUrl: string, token: string, jobId: string, name: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${httpUrl}/v1/jobs/${jobId}/artifacts/${name}`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200 || res.body === null) throw new Error(`download refused: ${res.status}`);
  let bytes = 0;
  for await (const chunk of res.body) bytes += (chunk as Uint8Array).length;
  if (bytes !== MIB * MiB) throw new Error(`downloaded ${bytes} bytes, not ${MIB * MiB}`);
  return performance.now() - started;
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
