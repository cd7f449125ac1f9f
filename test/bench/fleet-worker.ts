// One worker process of `npm run bench -- fleet`: holds a share of the fleet's node
// connections to the plane. It registers them a batch at a time, then sends each node's
// MessagePack Heartbeat once per `heartbeat_interval_ms`, the fleet's nodes spread evenly over
// the interval, and measures the plane's heartbeat processing lag with probes (below).
// Driven by its parent over the IPC channel (`WorkerCommand` in, `WorkerReport` out).
//
// Probe: every `probeEvery`-th heartbeat of a node carries an `id` and is written together
// with an unknown-type message with an `id`. The plane answers the unknown type with a
// non-fatal `unknown_type` Error whose `reply_to` is that id, and only after it has handled
// the heartbeat before it on the same connection: send → answer is the lag of that heartbeat.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { heartbeatEnvelope, heartbeatFrame, mintNodeToken, registerNode, type BenchNode } from './bench-node.js';
import type { Envelope } from './frame-socket.js';

export interface WorkerConfig {
  /** This worker's number, 0-based. */
  index: number;
  workers: number;
  /** Connections this worker holds. */
  nodes: number;
  /** Connections of the whole fleet, for the heartbeat phases. */
  fleetNodes: number;
  /** Connections this worker opens at once during the ramp. */
  batch: number;
  probeEvery: number;
  tcpUrl: string;
  dataDir: string;
}

export type WorkerCommand = { type: 'start' } | { type: 'hold' } | { type: 'report' } | { type: 'resume' } | { type: 'stop' };

export interface RampReport {
  type: 'registered';
  registered: number;
  failed: number;
  firstError?: string;
  /** From `start` to the last RegisterAck, in ms. */
  ms: number;
  /** Lag samples (ms) of probes answered during the ramp. */
  lags: number[];
}

export interface HoldReport {
  type: 'report';
  /** Lag samples (ms) of probes answered since `hold`. */
  lags: number[];
  heartbeats: number;
  probes: number;
  /** Probes still unanswered 10 s after they were sent. */
  unanswered: number;
  /** Connections the plane closed. */
  closed: number;
  /** Messages from the plane other than probe answers, by type (Error by code). */
  other: Record<string, number>;
  /** The latest a heartbeat left after its due time, in ms (this worker falling behind). */
  lateMaxMs: number;
  /** p99 of this worker's own event-loop delay, in ms: the part of a lag sample that is the client's. */
  loopDelayP99Ms: number;
}

/** The resume storm: every connection dropped, then every node resumed at once. */
export interface ResumeReport {
  type: 'resumed';
  resumed: number;
  failed: number;
  firstError?: string;
  /** From the first reconnect to the last RegisterAck, in ms. */
  ms: number;
}

export type WorkerReport = { type: 'ready' } | RampReport | HoldReport | ResumeReport;

interface Link {
  node: BenchNode;
  frame: Uint8Array;
  beats: number;
}

const TICK_MS = 5;
const UNANSWERED_AFTER_MS = 10_000;

class FleetWorker {
  private readonly links: (Link | undefined)[];
  private readonly pending = new Map<string, number>();
  private lags: number[] = [];
  private heartbeats = 0;
  private probes = 0;
  private unanswered = 0;
  private closed = 0;
  private other: Record<string, number> = {};
  private lateMaxMs = 0;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });
  private ticker: NodeJS.Timeout | undefined;
  private intervalMs = 0;
  private cursor = 0;
  private cycleStart = 0;
  private startedAt = 0;

  constructor(private readonly config: WorkerConfig) {
    this.links = new Array<Link | undefined>(config.nodes).fill(undefined);
  }

  async ramp(): Promise<RampReport> {
    this.startedAt = performance.now();
    this.loopDelay.enable();
    const token = await mintNodeToken(this.config.dataDir);
    const url = new URL(this.config.tcpUrl);
    let failed = 0;
    let firstError: string | undefined;
    for (let from = 0; from < this.config.nodes; from += this.config.batch) {
      const ks = range(from, Math.min(this.config.nodes, from + this.config.batch));
      const results = await Promise.allSettled(
        ks.map((k) => registerNode(url, CODEC_MSGPACK, token, { hostname: `fleet-${this.fleetIndex(k)}`, timeoutMs: 60_000 })),
      );
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') this.adopt(ks[i]!, result.value);
        else {
          failed++;
          firstError ??= String(result.reason);
        }
      });
    }
    const registered = this.config.nodes - failed;
    const lags = this.lags;
    this.lags = [];
    return { type: 'registered', registered, failed, firstError, ms: performance.now() - this.startedAt, lags };
  }

  /** Drops every connection, then resumes every node at once with its session token (a replica failover). */
  async resume(): Promise<ResumeReport> {
    const url = new URL(this.config.tcpUrl);
    const nodes = this.links.map((link) => link?.node);
    for (const node of nodes) node?.socket.close();
    const started = performance.now();
    let failed = 0;
    let firstError: string | undefined;
    const results = await Promise.allSettled(
      nodes.map((node, k) =>
        node === undefined
          ? Promise.reject(new Error('never registered'))
          : registerNode(url, CODEC_MSGPACK, node.sessionToken, { hostname: `fleet-${this.fleetIndex(k)}`, timeoutMs: 120_000, resumeNodeId: node.nodeId }),
      ),
    );
    results.forEach((result, k) => {
      if (result.status === 'fulfilled') this.adopt(k, result.value);
      else {
        failed++;
        firstError ??= String(result.reason);
      }
    });
    return { type: 'resumed', resumed: this.config.nodes - failed, failed, firstError, ms: performance.now() - started };
  }

  /** Starts a new measuring window. */
  hold(): void {
    this.lags = [];
    this.heartbeats = 0;
    this.probes = 0;
    this.unanswered = 0;
    this.other = {};
    this.lateMaxMs = 0;
    this.loopDelay.reset();
  }

  report(): HoldReport {
    const now = performance.now();
    for (const [id, sentAt] of this.pending) {
      if (now - sentAt < UNANSWERED_AFTER_MS) continue;
      this.pending.delete(id);
      this.unanswered++;
    }
    return {
      type: 'report',
      lags: this.lags,
      heartbeats: this.heartbeats,
      probes: this.probes,
      unanswered: this.unanswered,
      closed: this.closed,
      other: this.other,
      lateMaxMs: this.lateMaxMs,
      loopDelayP99Ms: this.loopDelay.percentile(99) / 1e6,
    };
  }

  stop(): void {
    clearInterval(this.ticker);
    for (const link of this.links) link?.node.socket.close();
  }

  /** Interleaved over the workers, so that consecutive phases of the fleet alternate between them. */
  private fleetIndex(k: number): number {
    return this.config.index + k * this.config.workers;
  }

  private phaseOf(k: number): number {
    return (this.fleetIndex(k) * this.intervalMs) / this.config.fleetNodes;
  }

  private adopt(k: number, node: BenchNode): void {
    node.socket.socket.on('error', () => {}); // counted on close
    node.socket.socket.on('close', () => {
      if (this.ticker !== undefined) this.closed++;
    });
    node.socket.onMessage = (e) => this.received(e);
    this.links[k] = { node, frame: heartbeatFrame(node.nodeId, CODEC_MSGPACK), beats: 0 };
    if (this.ticker === undefined) {
      this.intervalMs = node.heartbeatIntervalMs;
      this.cycleStart = this.startedAt;
      this.ticker = setInterval(() => this.tick(), TICK_MS);
    }
  }

  /** Sends every heartbeat that has come due since the last tick, in phase order. */
  private tick(): void {
    const now = performance.now();
    for (;;) {
      const due = this.cycleStart + this.phaseOf(this.cursor);
      if (due > now) return;
      const link = this.links[this.cursor];
      if (link !== undefined) this.beat(link, this.cursor, now - due);
      if (++this.cursor === this.links.length) {
        this.cursor = 0;
        this.cycleStart += this.intervalMs;
      }
    }
  }

  private beat(link: Link, k: number, lateMs: number): void {
    if (link.node.socket.socket.destroyed) return;
    this.lateMaxMs = Math.max(this.lateMaxMs, lateMs);
    this.heartbeats++;
    link.beats++;
    // Offset by the node's index, so that probes are spread over time like the heartbeats.
    if ((link.beats + k) % this.config.probeEvery !== 0) {
      void link.node.socket.write(link.frame);
      return;
    }
    const id = `p-${this.fleetIndex(k)}-${link.beats}`;
    const probe = Buffer.concat([
      encodeFrame(CODEC_MSGPACK, encodeBody(CODEC_MSGPACK, heartbeatEnvelope(link.node.nodeId, id))),
      encodeFrame(CODEC_MSGPACK, encodeBody(CODEC_MSGPACK, { type: 'FleetProbe', id, data: {} })),
    ]);
    this.probes++;
    this.pending.set(id, performance.now());
    void link.node.socket.write(probe);
  }

  private received(e: Envelope): void {
    const sentAt = e.reply_to === undefined ? undefined : this.pending.get(e.reply_to);
    if (sentAt !== undefined && e.type === 'Error' && e.data.code === 'unknown_type') {
      this.lags.push(performance.now() - sentAt);
      this.pending.delete(e.reply_to!);
      return;
    }
    const key = e.type === 'Error' ? `Error ${String(e.data.code)}` : e.type;
    this.other[key] = (this.other[key] ?? 0) + 1;
  }
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

function send(report: WorkerReport): void {
  process.send!(report);
}

function main(): void {
  if (process.send === undefined) throw new Error('fleet-worker runs as a child of test/bench/fleet.ts, with an IPC channel');
  const worker = new FleetWorker(JSON.parse(process.argv[2]!) as WorkerConfig);
  process.on('message', (command: WorkerCommand) => {
    switch (command.type) {
      case 'start':
        worker.ramp().then(send, (err: unknown) => {
          console.error(err);
          process.exit(1);
        });
        return;
      case 'hold':
        worker.hold();
        return;
      case 'resume':
        worker.resume().then(send, (err: unknown) => {
          console.error(err);
          process.exit(1);
        });
        return;
      case 'report':
        send(worker.report());
        return;
      case 'stop':
        worker.stop();
        process.disconnect();
        return;
    }
  });
  // The parent is gone (or told us to stop): nothing is left to report to.
  process.on('disconnect', () => {
    worker.stop();
    setTimeout(() => process.exit(0), 200).unref();
  });
  send({ type: 'ready' });
}

main();
