// One worker process of `npm run bench -- dispatch`: registers its share of the simulated
// nodes, and each node accepts and finishes every job it is assigned at once (JobAccepted and
// JobResult in one write). It stamps when each assignment and each JobResultAck arrived
// (epoch ms from performance.timeOrigin, comparable across processes on one machine) and sends
// the stamps to its parent in batches. Driven over IPC (`DispatchCommand` in, `DispatchReport` out).
// Given every replica's listener (`failoverUrls`), a node whose connection drops resumes its
// session on another replica, as a real agent does when its replica dies.
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { mintNodeToken, NODE_TAG, registerNode, type BenchNode } from './bench-node.js';
import type { Envelope } from './frame-socket.js';

export interface DispatchWorkerConfig {
  index: number;
  nodes: number;
  /** Registrations under way at once. */
  batch: number;
  tcpUrl: string;
  dataDir: string;
  /**
   * Every replica's node listener. When given, each node is tagged `bench_node: <its hostname>`
   * (a job can then be meant for it alone) and, when its connection drops without a `stop`,
   * resumes with its session token on another listener, trying them in its own order (the k-th
   * node starts k places along, so that a dead replica's nodes spread over the others) until one
   * acknowledges it.
   */
  failoverUrls?: string[];
}

export type DispatchCommand = { type: 'stop' };

/** `[job_id, assigned at, result acknowledged at]`, epoch ms. */
export type JobStamp = [string, number, number];

/** `[hostname, RegisterAck of the resumed session received at (epoch ms), connections tried]`. */
export type ResumeStamp = [string, number, number];

export type DispatchReport =
  | { type: 'ready'; registered: number; failed: number; firstError?: string; /** Of the nodes registered. */ hostnames: string[] }
  | { type: 'stamps'; stamps: JobStamp[] }
  | { type: 'resumed'; resumed: ResumeStamp[] }
  | { type: 'errors'; errors: Record<string, number> }
  | { type: 'resume-failed'; hostname: string; tries: number; error: string };

const FLUSH_MS = 20;
/** A resuming node gives up after this many connections tried... */
const RESUME_TRIES = 30;
/** ...waiting this long after each refused one. */
const RESUME_PAUSE_MS = 200;
/** A claim of a dead replica's node waits for that replica's lease to age out (default 10 s). */
const RESUME_ACK_TIMEOUT_MS = 60_000;
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
let resumed: ResumeStamp[] = [];
/** Other messages from the plane since the last report: `Error` by code and message, `Shutdown` by reason, the rest by type. */
let planeErrors: Record<string, number> = {};
let stopping = false;

function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The node's side of one job: accepted and finished in one write, as soon as it is assigned. */
function serve(node: BenchNode, hostname: string, urlIndex: number, k: number): void {
  const urls = config.failoverUrls;
  if (urls !== undefined && urls.length > 1) {
    node.socket.socket.on('error', () => {}); // a dead replica: the close resumes elsewhere
    node.socket.socket.once('close', () => {
      if (!stopping) void resume(node, hostname, urlIndex, k, urls);
    });
  }
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
    } else {
      // Counted, not answered: a job whose result was refused then never ends, which the parent sees.
      const key =
        e.type === 'Error'
          ? `Error ${String(e.data.code)}: ${String(e.data.message).slice(0, 300)}`
          : `${e.type}${e.type === 'Shutdown' || e.type === 'CancelJob' ? ` ${String(e.data.reason)}` : ''}`;
      planeErrors[key] = (planeErrors[key] ?? 0) + 1;
    }
  };
}

/** Resumes the node's session on the listeners after `from` in its own order, until one acknowledges it. */
async function resume(node: BenchNode, hostname: string, from: number, k: number, urls: string[]): Promise<void> {
  const others = urls.map((_, i) => i).filter((i) => i !== from);
  let lastError = '';
  for (let tries = 1; tries <= RESUME_TRIES && !stopping; tries++) {
    const index = others[(k + tries - 1) % others.length]!;
    try {
      const back = await registerNode(new URL(urls[index]!), CODEC_MSGPACK, node.sessionToken, {
        hostname,
        tags: { [NODE_TAG]: hostname },
        resumeNodeId: node.nodeId,
        timeoutMs: RESUME_ACK_TIMEOUT_MS,
      });
      resumed.push([hostname, epochMs(), tries]);
      nodes.set(hostname, back);
      serve(back, hostname, index, k);
      return;
    } catch (err) {
      lastError = String(err);
      await new Promise((resolve) => setTimeout(resolve, RESUME_PAUSE_MS));
    }
  }
  if (!stopping) send({ type: 'resume-failed', hostname, tries: RESUME_TRIES, error: lastError });
}

/** Every node of this worker by hostname, its latest session. */
const nodes = new Map<string, BenchNode>();

async function main(): Promise<void> {
  const url = new URL(config.tcpUrl);
  const urlIndex = Math.max(0, config.failoverUrls?.indexOf(config.tcpUrl) ?? 0);
  const token = await mintNodeToken(config.dataDir);
  let failed = 0;
  let firstError: string | undefined;
  for (let start = 0; start < config.nodes; start += config.batch) {
    const count = Math.min(config.batch, config.nodes - start);
    const hostnames = Array.from({ length: count }, (_, i) => `dispatch-${config.index}-${start + i}`);
    const tags = (h: string): Record<string, string> => (config.failoverUrls === undefined ? {} : { [NODE_TAG]: h });
    const results = await Promise.allSettled(hostnames.map((h) => registerNode(url, CODEC_MSGPACK, token, { hostname: h, tags: tags(h) })));
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') nodes.set(hostnames[i]!, r.value);
      else {
        failed++;
        firstError ??= String(r.reason);
      }
    }
  }
  let k = 0;
  for (const [hostname, node] of nodes) serve(node, hostname, urlIndex, config.index + k++);
  setInterval(() => {
    if (pending.length > 0) send({ type: 'stamps', stamps: pending });
    if (resumed.length > 0) send({ type: 'resumed', resumed });
    if (Object.keys(planeErrors).length > 0) send({ type: 'errors', errors: planeErrors });
    pending = [];
    resumed = [];
    planeErrors = {};
  }, FLUSH_MS);
  process.on('message', (command: DispatchCommand) => {
    if (command.type !== 'stop') return;
    stopping = true;
    for (const node of nodes.values()) node.socket.close();
    process.exit(0);
  });
  send({ type: 'ready', registered: nodes.size, failed, firstError, hostnames: [...nodes.keys()] });
}

void main();
