// `npm run bench -- transports`: for every transport the plane serves (tcp, unix, tls, ws, wss,
// grpc, grpcs), one connection into the real control plane beside the raw echo baseline of
// the same library (echo-servers.ts), dialed by the same client: Muster's own transport.
//
//   heartbeats/s   MessagePack heartbeats decoded, validated and handed to the node's session (its
//                  actor sees those that change something: none here, all say `Ready`);
//                  every BATCH of them is followed by an unknown-type marker with an `id`, which
//                  the plane answers (a non-fatal Error) after handling them in order: the client
//                  keeps at most WINDOW batches unanswered. The echo gets the same bytes and is
//                  done when all of them came back.
//   round trip     one unknown-type message with an `id` at a time: decode, validate, actor,
//                  Error encoded and sent back (the plane also logs a warning for each); the
//                  echo sends the same bytes back.
//
//   BENCH_TRANSPORT_HEARTBEATS   heartbeats per run (default 100000)
//   BENCH_TRANSPORT_ROUND_TRIPS  round trips per run (default 3000)
//   BENCH_TRANSPORT_RUNS         runs per transport, medians reported (default 3)
//   BENCH_TRANSPORTS             a comma-separated subset, e.g. tcp,ws
//   BENCH_PLANE_NODE_ARGS        Node flags for the planes, e.g. --cpu-prof --cpu-prof-dir=DIR; the
//                                plane's busy windows are then printed for profile-summary.ts
import '../../transports/builtin.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CODEC_MSGPACK, decodeBody, encodeBody } from '../../protocol/codec.js';
import { transportFor, type ClientTlsOptions, type Connection } from '../../transports/transport.js';
import { makeTestPki } from '../transports/test-certificates.js';
import { heartbeatEnvelope, mintNodeToken, registerEnvelope } from './bench-node.js';
import type { Envelope } from './frame-socket.js';
import { planeNodeArgs, startEchoServers, startPlane, type RunningPlane } from './processes.js';
import { CpuWindow } from './proc-stats.js';
import { summarize } from './quantiles.js';

const HEARTBEATS = intFromEnv('BENCH_TRANSPORT_HEARTBEATS', 100_000);
const ROUND_TRIPS = intFromEnv('BENCH_TRANSPORT_ROUND_TRIPS', 3_000);
const RUNS = intFromEnv('BENCH_TRANSPORT_RUNS', 3);
/** Heartbeats between two markers. */
const BATCH = 256;
/** Batches sent and not yet answered: about 8 × 256 × 300 bytes, well under the send buffer. */
const WINDOW = 8;
/** A link that makes no progress for this long has failed. */
const STALL_MS = 30_000;
const CODEC = CODEC_MSGPACK;
const SCHEMES = ['tcp', 'unix', 'tls', 'ws', 'wss', 'grpc', 'grpcs'] as const;
type Scheme = (typeof SCHEMES)[number];
/** What the original design promised, in msg/s (at 0.5 to 3 ms); TLS and wss counted as their plain kin. */
const PROMISED: Partial<Record<Scheme, number>> = { tcp: 10_000, tls: 10_000, unix: 15_000, ws: 8_000, wss: 8_000 };

/**
 * One dialed connection, counting what comes back: every frame from an echo; from the plane
 * only answers (RegisterAck, or the non-fatal Error that carries a `reply_to`), each checked.
 */
class Link {
  returned = 0;
  private target = Number.POSITIVE_INFINITY;
  private settle: ((err?: Error) => void) | undefined;
  private failure: Error | undefined;
  private lastProgress = performance.now();
  private readonly watchdog = setInterval(() => this.checkStall(), 1_000).unref();
  /** The last envelope counted, when decoding. */
  last: Envelope | undefined;

  private constructor(
    readonly conn: Connection,
    private readonly fromPlane: boolean,
  ) {
    conn.start({
      frame: (_codecByte, body) => this.onFrame(body),
      error: (err) => this.fail(err),
      closed: (err) => this.fail(err ?? new Error(`${conn.remoteAddress} closed the connection`)),
    });
  }

  static async dial(url: URL, fromPlane: boolean, tls: ClientTlsOptions): Promise<Link> {
    const options = { maxFrameBytes: 1_048_576, maxSendBufferBytes: 16 * 1024 * 1024, connectTimeoutMs: 10_000, tls };
    return new Link(await transportFor(url).dial(url, options), fromPlane);
  }

  send(body: Uint8Array): void {
    this.conn.send(CODEC, body);
  }

  /** Resolves once `count` frames were counted in all. */
  until(count: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.returned >= count) return Promise.resolve();
    this.lastProgress = performance.now();
    return new Promise((resolve, reject) => {
      this.target = count;
      this.settle = (err) => (err === undefined ? resolve() : reject(err));
    });
  }

  async close(): Promise<void> {
    clearInterval(this.watchdog);
    this.failure ??= new Error('closed by us');
    await this.conn.close();
  }

  private onFrame(body: Uint8Array): void {
    if (this.fromPlane && !this.isAnswer(decodeBody(CODEC, body) as Envelope)) return;
    this.lastProgress = performance.now();
    if (++this.returned >= this.target) this.wake();
  }

  private isAnswer(envelope: Envelope): boolean {
    if (envelope.type === 'Error' && (envelope.data.fatal === true || envelope.data.code !== 'unknown_type')) {
      this.fail(new Error(`the plane answered ${JSON.stringify(envelope)}`));
      return false;
    }
    this.last = envelope;
    return envelope.type === 'RegisterAck' || envelope.reply_to !== undefined;
  }

  private checkStall(): void {
    if (this.settle !== undefined && performance.now() - this.lastProgress > STALL_MS) {
      this.fail(new Error(`${this.conn.remoteAddress}: ${this.returned} of ${this.target} answers after ${STALL_MS} ms without progress`));
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake(this.failure);
  }

  private wake(err?: Error): void {
    const settle = this.settle;
    this.settle = undefined;
    this.target = Number.POSITIVE_INFINITY;
    settle?.(err);
  }
}

/** A pre-encoded unknown-type message with an `id`: the plane answers it with a non-fatal Error. */
function probe(id: string): Uint8Array {
  return encodeBody(CODEC, { type: 'BenchProbe', id, data: {} });
}

async function register(link: Link, token: string): Promise<string> {
  link.send(encodeBody(CODEC, registerEnvelope(token, { hostname: 'bench-transports' })));
  await link.until(link.returned + 1);
  if (link.last?.type !== 'RegisterAck') throw new Error(`registration refused: ${JSON.stringify(link.last)}`);
  return String(link.last.data.node_id);
}

/** Heartbeats per second: `batches` × BATCH heartbeats, a marker after each batch, an end marker. */
async function heartbeatRate(link: Link, heartbeat: Uint8Array, batches: number, backPerBatch: number): Promise<number> {
  const markers = Array.from({ length: batches }, (_, b) => probe(`m-${b}`));
  const end = probe('end');
  const base = link.returned;
  const started = performance.now();
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < BATCH; i++) link.send(heartbeat);
    link.send(markers[b]!);
    if (b >= WINDOW) await link.until(base + (b + 1 - WINDOW) * backPerBatch);
  }
  link.send(end);
  await link.until(base + batches * backPerBatch + 1);
  return (batches * BATCH * 1000) / (performance.now() - started);
}

/** Round-trip times in ms of `count` probes sent one at a time. */
async function roundTrips(link: Link, count: number): Promise<number[]> {
  const ping = probe('ping');
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const base = link.returned;
    const started = performance.now();
    link.send(ping);
    await link.until(base + 1);
    samples.push(performance.now() - started);
  }
  return samples;
}

interface Measured {
  rate: number;
  /** CPU of the server process and of this client while heartbeats flowed, % of one core. */
  serverCpu: number;
  clientCpu: number;
  p50: number;
  p99: number;
}

interface Row {
  scheme: Scheme;
  plane: Measured;
  raw: Measured;
}

/** One end to measure: the plane (answers markers only) or an echo (every frame comes back). */
interface Side {
  link: Link;
  serverPid: number;
  backPerBatch: number;
}

/** One run against one side; `window` gets the CLOCK_MONOTONIC µs bounds of both phases. */
async function runOnce(side: Side, heartbeat: Uint8Array, batches: number, rtts: number, window: number[]): Promise<Measured> {
  const server = new CpuWindow(side.serverPid);
  const client = process.cpuUsage();
  const wall = performance.now();
  window.push(monotonicUs());
  server.start();
  const rate = await heartbeatRate(side.link, heartbeat, batches, side.backPerBatch);
  const serverCpu = server.percent().percent;
  const used = process.cpuUsage(client);
  const clientCpu = (used.user + used.system) / 10 / (performance.now() - wall);
  window.push(monotonicUs());
  const { p50, p99 } = summarize(await roundTrips(side.link, rtts));
  window.push(monotonicUs());
  return { rate, serverCpu, clientCpu, p50, p99 };
}

/** One transport: a registered node on the plane and a link to the echo, then RUNS alternating runs. */
async function measure(scheme: Scheme, plane: RunningPlane, setup: Setup): Promise<Row> {
  const planeUrl = plane.nodeUrls.find((u) => u.protocol === `${scheme}:`);
  if (planeUrl === undefined) throw new Error(`the plane serves no ${scheme}:// (${plane.nodeUrls.join(', ')})`);
  const echoUrl = setup.echoUrls.get(`${scheme}:`)!;
  const node: Side = { link: await Link.dial(planeUrl, true, setup.tls), serverPid: plane.pid, backPerBatch: 1 };
  const echo: Side = { link: await Link.dial(echoUrl, false, setup.tls).catch(closing(node.link)), serverPid: setup.echoPid, backPerBatch: BATCH + 1 };
  try {
    const nodeId = await register(node.link, await mintNodeToken(plane.dataDir, 600));
    const heartbeat = encodeBody(CODEC, heartbeatEnvelope(nodeId));
    const batches = Math.max(WINDOW + 1, Math.ceil(HEARTBEATS / BATCH));
    const runs: { plane: Measured; raw: Measured }[] = [];
    // A first, shorter run warms up the JIT on both sides and is not counted.
    for (let run = -1; run < RUNS; run++) {
      const n = run < 0 ? Math.ceil(batches / 5) + WINDOW : batches;
      const rtts = run < 0 ? Math.ceil(ROUND_TRIPS / 5) : ROUND_TRIPS;
      const window: number[] = [];
      const planeRun = await runOnce(node, heartbeat, n, rtts, window);
      const rawRun = await runOnce(echo, heartbeat, n, rtts, []);
      if (run >= 0) runs.push({ plane: planeRun, raw: rawRun });
      if (run === RUNS - 1 && planeNodeArgs().length > 0) {
        const [t0, t1, t2] = window;
        console.error(`  ${scheme} plane profile windows (last run): heartbeats --from-us ${t0} --to-us ${t1}, round trips --from-us ${t1} --to-us ${t2}`);
      }
    }
    const row: Row = { scheme, plane: medianOf(runs.map((r) => r.plane)), raw: medianOf(runs.map((r) => r.raw)) };
    console.error(`  ${cellsOf(row).join('  ')}`);
    return row;
  } finally {
    await Promise.all([node.link.close(), echo.link.close()]);
  }
}

/** A rejection handler that closes `link` and rethrows. */
function closing(link: Link): (err: unknown) => Promise<never> {
  return async (err) => {
    await link.close();
    throw err;
  };
}

function medianOf(runs: Measured[]): Measured {
  const median = (pick: (m: Measured) => number): number => summarize(runs.map(pick)).p50;
  return {
    rate: median((m) => m.rate),
    serverCpu: median((m) => m.serverCpu),
    clientCpu: median((m) => m.clientCpu),
    p50: median((m) => m.p50),
    p99: median((m) => m.p99),
  };
}

/** Plane flags per family: the plain one serves tcp, unix, ws, grpc; with a certificate tls, wss, grpcs. */
function planeArgs(secure: boolean, dir: string): string[] {
  const listeners = ['--ws', '127.0.0.1:0', '--grpc', '127.0.0.1:0'];
  if (secure) return [...listeners, '--tls-cert', join(dir, 'server.crt'), '--tls-key', join(dir, 'server.key')];
  return [...listeners, '--unix', join(dir, 'plane.sock')];
}

/** What every measurement shares: the echo process, the temp dir with the certificate, the client's TLS. */
interface Setup {
  echoUrls: Map<string, URL>;
  echoPid: number;
  dir: string;
  tls: ClientTlsOptions;
}

/** One plane for `schemes`, all plain or all TLS, measured one transport after the other. */
async function measureFamily(secure: boolean, schemes: Scheme[], setup: Setup): Promise<Row[]> {
  if (schemes.length === 0) return [];
  const plane = await startPlane({ MUSTER_HEARTBEAT_INTERVAL_MS: '60000' }, { logLevel: 'warn', args: planeArgs(secure, setup.dir) });
  try {
    const rows: Row[] = [];
    for (const scheme of schemes) rows.push(await measure(scheme, plane, setup));
    return rows;
  } finally {
    await plane.stop();
  }
}

export async function runTransports(): Promise<void> {
  const wanted = (process.env.BENCH_TRANSPORTS ?? SCHEMES.join(',')).split(',').filter((s) => s !== '');
  const unknown = wanted.filter((s) => !(SCHEMES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new Error(`unknown transports ${unknown.join(', ')} (known: ${SCHEMES.join(', ')})`);
  const schemes = SCHEMES.filter((s) => wanted.includes(s));
  printMachine();
  const dir = mkdtempSync(join(tmpdir(), 'muster-bench-tr-'));
  const pki = makeTestPki();
  writeFileSync(join(dir, 'server.crt'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key, { mode: 0o600 });
  const tls: ClientTlsOptions = { ca: pki.ca };
  const echoArgs = ['--tls-cert', join(dir, 'server.crt'), '--tls-key', join(dir, 'server.key'), '--unix', join(dir, 'echo.sock')];
  const echo = await startEchoServers([...echoArgs, ...schemes]);
  try {
    const setup: Setup = { echoUrls: new Map(echo.urls.map((u) => [u.protocol, u])), echoPid: echo.pid, dir, tls };
    const secure = (s: Scheme): boolean => s === 'tls' || s === 'wss' || s === 'grpcs';
    const rows = [
      ...(await measureFamily(false, schemes.filter((s) => !secure(s)), setup)),
      ...(await measureFamily(true, schemes.filter(secure), setup)),
    ];
    printTable(rows.sort((a, b) => SCHEMES.indexOf(a.scheme) - SCHEMES.indexOf(b.scheme)));
  } finally {
    await echo.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function printMachine(): void {
  const cpu = cpus();
  console.log(`machine: ${cpu.length} × ${cpu[0]?.model ?? '?'}, Node ${process.version}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`date: ${new Date().toISOString()}`);
  console.log(`per run: ${HEARTBEATS} MessagePack heartbeats (${BATCH} per marker, ${WINDOW} markers in flight), ${ROUND_TRIPS} round trips; ${RUNS} runs, medians\n`);
  console.error(`measuring (${HEADER.join(', ')}):`);
}

const HEADER = [
  'transport',
  'plane msg/s',
  'raw msg/s',
  'plane/raw',
  'plane p50/p99 µs',
  'raw p50/p99 µs',
  'p50 ×raw',
  '× design',
  'cpu% plane srv/cli',
  'cpu% raw srv/cli',
];

function cellsOf(row: Row): string[] {
  const promised = PROMISED[row.scheme];
  const cpu = (m: Measured): string => `${Math.round(m.serverCpu)} / ${Math.round(m.clientCpu)}`;
  return [
    row.scheme,
    count(row.plane.rate),
    count(row.raw.rate),
    (row.plane.rate / row.raw.rate).toFixed(2),
    `${us(row.plane.p50)} / ${us(row.plane.p99)}`,
    `${us(row.raw.p50)} / ${us(row.raw.p99)}`,
    (row.plane.p50 / row.raw.p50).toFixed(1),
    promised === undefined ? '-' : (row.plane.rate / promised).toFixed(1),
    cpu(row.plane),
    cpu(row.raw),
  ];
}

function printTable(rows: Row[]): void {
  const cells = rows.map(cellsOf);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join(' | ');
  console.log(line(HEADER));
  console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  for (const c of cells) console.log(line(c));
  console.log(
    [
      '',
      'plane/raw: aim >= 0.67 (within 1.5x of raw). p50 ×raw: plane p50 over raw p50.',
      '× design: plane msg/s over what the original design promised (tcp and tls 10,000, ws and wss 8,000,',
      '  unix 15,000 msg/s at 0.5-3 ms); aim >= 10.',
      'cpu%: server process and this client while the heartbeats flowed, % of one core.',
      `load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    ].join('\n'),
  );
}

function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function us(ms: number): string {
  return Math.round(ms * 1000).toLocaleString('en-US');
}

/** CLOCK_MONOTONIC in µs, the clock of the plane's .cpuprofile (for profile-summary.ts --from-us/--to-us). */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function intFromEnv(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
}
