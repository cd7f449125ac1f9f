// `npm run bench`: the control plane's throughput and latency over one TCP connection,
// each beside a raw `net` echo of the same bytes measured in the same run.
//
//   heartbeats/s   MessagePack and JSON heartbeats decoded, validated and handled (a trailing
//                  message with an `id` is answered only after all of them, in order), twice:
//                  - steady: the same status each time, which stamps the node's liveness cell
//                    and needs no actor transition (the common case in a fleet);
//                  - alternating Ready/Busy: every heartbeat is an event that the node's actor
//                    handles with a state change (ready ⇄ busy), the worst case
//   round trip     JobAssignment received → JobAccepted + JobResult sent → JobResultAck
//                  received, one job at a time (light load), results stored in SQLite; beside
//                  the raw echo of the same bytes and a durable echo (echo-servers.ts), which
//                  writes and fdatasyncs them before it answers: the floor of any acknowledgement
//                  that waits for the disk, as a JobResultAck must
//   masking        the plane's masking of a job's secrets per 4 KiB log chunk (masking.ts; alone: `npm run bench masking`)
//
// BENCH_ROUND_TRIP_TRACE=1 also traces the plane (plane-probe.ts) and prints where the round
// trips' time went and what the slow ones have in common (round-trip-trace.ts).
import { readFileSync, rmSync } from 'node:fs';
import { cpus, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CODEC_JSON, CODEC_MSGPACK, encodeBody, type Codec } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { heartbeatFrame, mintApiToken, mintNodeToken, registerNode, type BenchNode } from './bench-node.js';
import { runBus } from './bus.js';
import { runArtifacts } from './artifacts.js';
import { runCluster } from './cluster.js';
import { measureMasking } from './masking.js';
import { runDispatch } from './dispatch.js';
import { runAbuse } from './abuse.js';
import { runFleet } from './fleet.js';
import { runTransports } from './transports.js';
import { runVisualizer } from './visualizer.js';
import { FrameSocket, type Envelope } from './frame-socket.js';
import { startEchoServers, startPlane, type RunningPlane } from './processes.js';
import type { ProbeFile } from './plane-probe.js';
import { summarize, type Summary } from './quantiles.js';
import { explainRoundTrips, watchClientGc, type Stamped } from './round-trip-trace.js';

const HEARTBEATS = Number(process.env.BENCH_HEARTBEATS ?? 200_000);
const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS ?? 300);
const RUNS = 3;
const BATCH = 256;
const TRACE = process.env.BENCH_ROUND_TRIP_TRACE === '1';

async function main(): Promise<void> {
  const which = process.argv[2] ?? 'tcp';
  if (which === 'fleet') return runFleet();
  if (which === 'transports') return runTransports();
  if (which === 'dispatch') return runDispatch();
  if (which === 'abuse') return runAbuse();
  if (which === 'bus') return runBus();
  if (which === 'cluster') return runCluster();
  if (which === 'visualizer') return runVisualizer();
  if (which === 'artifacts') return runArtifacts();
  if (which === 'masking') return printMasking();
  if (which !== 'tcp') throw new Error(`unknown benchmark ${which} (known: tcp, fleet, transports, dispatch, abuse, bus, visualizer, artifacts, cluster, masking)`);
  console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);
  console.log(`heartbeats per run: ${HEARTBEATS}, round trips per run: ${ROUND_TRIPS}, runs: ${RUNS} (medians)\n`);
  const probeOut = join(tmpdir(), `muster-probe-${process.pid}.json`);
  const plane = await startPlane(
    { MUSTER_HEARTBEAT_INTERVAL_MS: '60000', ...(TRACE ? { MUSTER_PROBE_OUT: probeOut } : {}) },
    TRACE ? { nodeArgs: ['--import', 'tsx', '--import', fileURLToPath(new URL('./plane-probe.ts', import.meta.url))] } : {},
  );
  const echo = await startEchoServers(['tcp', 'durable']);
  const [rawPort, durablePort] = echo.urls.map((url) => Number(url.port)) as [number, number];
  const clientGc = TRACE ? watchClientGc() : undefined;
  const stamps: Stamped[] = [];
  try {
    for (const alternating of [false, true]) {
      for (const codec of [CODEC_MSGPACK, CODEC_JSON] as Codec[]) {
        const name = `${codec === CODEC_MSGPACK ? 'MessagePack' : 'JSON'}, ${alternating ? 'Ready/Busy' : 'steady'}`;
        const node = await registerOn(plane, codec);
        const frames = [heartbeatFrame(node.nodeId, codec)];
        if (alternating) frames.push(heartbeatFrame(node.nodeId, codec, undefined, 'Busy'));
        const planeRates: number[] = [];
        const rawRates: number[] = [];
        for (let run = 0; run < RUNS; run++) {
          planeRates.push(await heartbeatRate(node.socket, frames, codec));
          rawRates.push(await echoRate(rawPort, frames[0]!));
        }
        node.socket.close();
        const p = median(planeRates);
        const r = median(rawRates);
        console.log(
          `heartbeats ${name.padEnd(24)} plane ${fmt(p)} msg/s   raw net echo+decode ${fmt(r)} msg/s   plane/raw ${(p / r).toFixed(2)}`,
        );
      }
    }
    const rtt = await roundTrips(plane, stamps);
    const raw = await echoRoundTrips(rawPort, rtt.bytes);
    const durable = await echoRoundTrips(durablePort, rtt.bytes);
    console.log(
      `\nround trip (MessagePack)  plane p50 ${us(rtt.plane.p50)} p99 ${us(rtt.plane.p99)}   ` +
        `durable echo p50 ${us(durable.p50)} p99 ${us(durable.p99)}   raw net echo p50 ${us(raw.p50)} p99 ${us(raw.p99)}   ` +
        `plane/durable p50 ${(rtt.plane.p50 / durable.p50).toFixed(1)} p99 ${(rtt.plane.p99 / durable.p99).toFixed(1)}`,
    );
    console.log('');
    printMasking();
  } finally {
    clientGc?.stop();
    await echo.stop();
    await plane.stop();
  }
  if (clientGc !== undefined) {
    const probe = JSON.parse(readFileSync(probeOut, 'utf8')) as ProbeFile;
    rmSync(probeOut, { force: true });
    console.log(`\n${explainRoundTrips(stamps, probe, clientGc.events).join('\n')}`);
  }
}

/** The masking figure alone (`npm run bench masking`), also printed at the end of the tcp run. */
function printMasking(): void {
  const masking = measureMasking();
  console.log(
    `masking 4 KiB log chunks, 5 secrets (in process, CPU time)  ${masking.maskedUs.toFixed(1)} µs/chunk   ` +
      `copy baseline ${masking.baselineUs.toFixed(2)} µs/chunk   extra ${(masking.maskedUs - masking.baselineUs).toFixed(1)} µs/chunk`,
  );
}

async function registerOn(plane: RunningPlane, codec: Codec, cpuCores = 1): Promise<BenchNode> {
  return registerNode(plane.tcpUrl, codec, await mintNodeToken(plane.dataDir, 600), { cpuCores });
}

/** `count` frames, taking `frames` in turn. */
function batchOf(frames: Uint8Array | Uint8Array[], count: number): Buffer {
  const list = Array.isArray(frames) ? frames : [frames];
  return Buffer.concat(Array.from({ length: count }, (_, i) => list[i % list.length]!));
}

/** Heartbeats per second through the plane: N heartbeats, then a message that is answered after them. */
async function heartbeatRate(socket: FrameSocket, frames: Uint8Array[], codec: Codec): Promise<number> {
  const batch = batchOf(frames, BATCH);
  const sentinelId = `s-${Math.random().toString(36).slice(2)}`;
  const answered = socket.next((e) => e.reply_to === sentinelId, 120_000);
  const started = performance.now();
  for (let sent = 0; sent < HEARTBEATS; sent += BATCH) await socket.write(batch);
  // An unknown type is answered with a non-fatal Error carrying our id: the end marker.
  await socket.write(encodeFrame(codec, encodeBody(codec, { type: 'BenchEnd', id: sentinelId, data: {} })));
  await answered;
  return (Math.ceil(HEARTBEATS / BATCH) * BATCH * 1000) / (performance.now() - started);
}

/**
 * The same bytes through a raw echo server, each echoed frame split out and its body
 * decoded on arrival (as the DESIGN's "raw net loop" ceiling): frames per second.
 */
async function echoRate(port: number, frame: Uint8Array): Promise<number> {
  const socket = await FrameSocket.open('127.0.0.1', port);
  const batch = batchOf(frame, BATCH);
  const frames = Math.ceil(HEARTBEATS / BATCH) * BATCH;
  let received = 0;
  const done = new Promise<void>((resolve) => {
    socket.onMessage = () => {
      if (++received === frames) resolve();
    };
  });
  const started = performance.now();
  for (let sent = 0; sent < frames; sent += BATCH) await socket.write(batch);
  await done;
  const rate = (frames * 1000) / (performance.now() - started);
  socket.close();
  return rate;
}

type Percentiles = Pick<Summary, 'p50' | 'p99'>;

/** One job at a time; each round trip's wall-clock span goes into `stamps` (for the trace). */
async function roundTrips(plane: RunningPlane, stamps: Stamped[]): Promise<{ plane: Percentiles; bytes: Uint8Array }> {
  const codec = CODEC_MSGPACK;
  const node = await registerOn(plane, codec, 1);
  const apiToken = await mintApiToken(plane.dataDir, 'operator', 600);
  const samples: number[] = [];
  let lastBytes = new Uint8Array();
  for (let i = 0; i < ROUND_TRIPS * RUNS; i++) {
    const assignment = node.socket.next((e) => e.type === 'JobAssignment');
    await submitJob(plane.httpUrl, apiToken);
    const a = await assignment;
    const started = performance.now();
    const jobId = String(a.data.job_id);
    const attempt = Number(a.data.attempt);
    const acked = node.socket.next((e) => e.type === 'JobResultAck' && e.data.job_id === jobId);
    lastBytes = Buffer.concat([
      encodeFrame(codec, encodeBody(codec, { type: 'JobAccepted', data: { job_id: jobId, attempt } })),
      encodeFrame(codec, encodeBody(codec, resultOf(jobId, attempt, node.nodeId))),
    ]);
    await node.socket.write(lastBytes);
    await acked;
    const ended = performance.now();
    samples.push(ended - started);
    stamps.push({ startMs: performance.timeOrigin + started, endMs: performance.timeOrigin + ended });
  }
  node.socket.close();
  return { plane: percentiles(samples), bytes: lastBytes };
}

/** The same bytes through an echo server, one round trip at a time, as many as the plane's. */
async function echoRoundTrips(port: number, bytes: Uint8Array): Promise<Percentiles> {
  const echo = await FrameSocket.open('127.0.0.1', port, false);
  const samples: number[] = [];
  for (let i = 0; i < ROUND_TRIPS * RUNS; i++) {
    let received = 0;
    const started = performance.now();
    await new Promise<void>((resolve) => {
      echo.onBytes = (n) => {
        received += n;
        if (received >= bytes.length) resolve();
      };
      void echo.write(bytes);
    });
    samples.push(performance.now() - started);
  }
  echo.close();
  return percentiles(samples);
}

function resultOf(jobId: string, attempt: number, nodeId: string): Envelope {
  const now = new Date().toISOString();
  return {
    type: 'JobResult',
    data: {
      job_id: jobId,
      attempt,
      node_id: nodeId,
      result: { status: 'Completed', exit_code: 0, stdout: 'ok\n', stderr: '', artifacts: [], started_at: now, completed_at: now },
      metrics: { duration_ms: 1, cpu_time_ms: 1, memory_peak_mb: 1 },
    },
  };
}

async function submitJob(httpUrl: string, token: string): Promise<void> {
  const response = await fetch(`${httpUrl}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ job: { command: ['true'] } }),
  });
  // Read to the end, so that the connection goes back to the pool for the next submit.
  const text = await response.text();
  if (response.status !== 201) throw new Error(`submit failed: ${response.status} ${text}`);
}

function percentiles(samples: number[]): Percentiles {
  return summarize(samples);
}

function median(values: number[]): number {
  return percentiles(values).p50;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US').padStart(9);
}

function us(ms: number): string {
  return `${Math.round(ms * 1000).toLocaleString('en-US')} µs`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
