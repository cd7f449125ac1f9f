// One worker process of `npm run bench -- dispatch`: registers its share of the simulated
// nodes, and each node accepts and finishes every job it is assigned at once (JobAccepted and
// JobResult in one write). It stamps when each assignment and each JobResultAck arrived
// (epoch ms from performance.timeOrigin, comparable across processes on one machine) and sends
// the stamps to its parent in batches. Driven over IPC (`DispatchCommand` in, `DispatchReport` out).
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { mintNodeToken, registerNode, type BenchNode } from './bench-node.js';
import type { Envelope } from './frame-socket.js';

export interface DispatchWorkerConfig {
  index: number;
  nodes: number;
  /** Registrations under way at once. */
  batch: number;
  tcpUrl: string;
  dataDir: string;
}

export type DispatchCommand = { type: 'stop' };

/** `[job_id, assigned at, result acknowledged at]`, epoch ms. */
export type JobStamp = [string, number, number];

export type DispatchReport =
  | { type: 'ready'; registered: number; failed: number; firstError?: string }
  | { type: 'stamps'; stamps: JobStamp[] };

const FLUSH_MS = 20;
const RESULT = {
  status: 'Completed',
  exit_code: 0,
  stdout: '',
  stderr: '',
  artifacts: [],
  started_at: new Date(0).toISOString(),
  completed_at: new Date(0).toISOString(),
};
const METRICS = { duration_ms: 0, cpu_time_ms: 0, memory_peak_mb: 0 };

const config = JSON.parse(process.argv[2]!) as DispatchWorkerConfig;
const send = (report: DispatchReport): void => void process.send!(report);
const assignedAt = new Map<string, number>();
let pending: JobStamp[] = [];

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The node's side of one job: accepted and finished in one write, as soon as it is assigned. */
function serve(node: BenchNode): void {
  node.socket.onMessage = (e: Envelope) => {
    if (e.type === 'JobAssignment') {
      const jobId = String(e.data.job_id);
      const attempt = Number(e.data.attempt);
      assignedAt.set(jobId, epochMs());
      const accepted = encodeFrame(CODEC_MSGPACK, encodeBody(CODEC_MSGPACK, { type: 'JobAccepted', data: { job_id: jobId, attempt } }));
      const result = encodeFrame(
        CODEC_MSGPACK,
        encodeBody(CODEC_MSGPACK, { type: 'JobResult', id: jobId, data: { job_id: jobId, attempt, node_id: node.nodeId, result: RESULT, metrics: METRICS } }),
      );
      node.socket.socket.write(Buffer.concat([accepted, result]));
    } else if (e.type === 'JobResultAck') {
      const jobId = String(e.data.job_id);
      pending.push([jobId, assignedAt.get(jobId) ?? Number.NaN, epochMs()]);
      assignedAt.delete(jobId);
    }
  };
}

async function main(): Promise<void> {
  const url = new URL(config.tcpUrl);
  const token = await mintNodeToken(config.dataDir);
  const nodes: BenchNode[] = [];
  let failed = 0;
  let firstError: string | undefined;
  for (let start = 0; start < config.nodes; start += config.batch) {
    const count = Math.min(config.batch, config.nodes - start);
    const results = await Promise.allSettled(
      Array.from({ length: count }, (_, i) => registerNode(url, CODEC_MSGPACK, token, { hostname: `dispatch-${config.index}-${start + i}` })),
    );
    for (const r of results) {
      if (r.status === 'fulfilled') nodes.push(r.value);
      else {
        failed++;
        firstError ??= String(r.reason);
      }
    }
  }
  for (const node of nodes) serve(node);
  setInterval(() => {
    if (pending.length === 0) return;
    send({ type: 'stamps', stamps: pending });
    pending = [];
  }, FLUSH_MS);
  process.on('message', (command: DispatchCommand) => {
    if (command.type !== 'stop') return;
    for (const node of nodes) node.socket.close();
    process.exit(0);
  });
  send({ type: 'ready', registered: nodes.length, failed, firstError });
}

void main();
