// The agent's side of the `batch` wire feature (PROTOCOL.md section 8), a real agent and a real
// plane in this process over real TCP, every frame counted where the agent's connection meets
// the socket: the agent offers `batch`, a burst of log chunks goes out in Batch frames (and
// arrives whole and in order, before the job's result), and the plane's assignments of one
// pass come to it in one Batch, each taken as if it had come alone. Against a scripted plane:
// a bad assignment in the middle of a Batch is rejected on its own while those around it run,
// and a Batch on a session that did not turn `batch` on (or one nested) is taken as nothing.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type Agent } from '../../agent/agent.js';
import { createLogger } from '../../observability/logger.js';
import { CODEC_JSON, DEFLATE_BIT, decodeBody, encodeBody, type Codec } from '../../protocol/codec.js';
import type { MessageData } from '../../protocol/messages.js';
import { toNewJobs } from '../../supervisor/admin/job-request.js';
import { TERMINAL_STATES } from '../../supervisor/store/job-store.js';
import { transportFor, type Connection } from '../../transports/transport.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';
import { sampleMessages } from '../protocol/sample-messages.js';
import { FakePlane, type PlaneConn } from './fake-plane.js';

/** One frame as it crossed the socket: the types of the messages it carried (several for a Batch). */
interface Frame {
  batch: boolean;
  types: string[];
  /** A lone message's `data`. */
  data?: Record<string, unknown>;
}

function frameOf(codecByte: number, body: Uint8Array): Frame {
  const plain = (codecByte & DEFLATE_BIT) !== 0 ? inflateRawSync(body) : body;
  const envelope = decodeBody((codecByte & ~DEFLATE_BIT) as Codec, plain) as { type: string; data: { messages?: Array<{ type: string }> } };
  if (envelope.type !== 'Batch') return { batch: false, types: [envelope.type], data: envelope.data };
  return { batch: true, types: (envelope.data.messages ?? []).map((m) => m.type) };
}

/** `conn`, with every frame it sends and delivers recorded. */
function tapped(conn: Connection, sent: Frame[], received: Frame[]): Connection {
  return new Proxy(conn, {
    get(target, prop) {
      if (prop === 'send') {
        return (codecByte: number, body: Uint8Array) => {
          sent.push(frameOf(codecByte, body));
          target.send(codecByte, body);
        };
      }
      if (prop === 'start') {
        return (sink: Parameters<Connection['start']>[0]) =>
          target.start({
            ...sink,
            frame: (codecByte, body) => {
              received.push(frameOf(codecByte, body));
              sink.frame(codecByte, body);
            },
          });
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const CHUNK_BYTES = 4096;
const OUTPUT_BYTES = 300_000;

let p: SecurityPlane;
let agent: Agent;
let dir: string;
const sent: Frame[] = [];
const received: Frame[] = [];

beforeAll(async () => {
  p = await startSecurityPlane();
  dir = mkdtempSync(join(tmpdir(), 'muster-agent-batch-'));
  agent = startAgent({
    urls: [p.tcpUrl],
    token: await p.registrationToken(),
    workDir: dir,
    logger: createLogger({ level: 'silent' }),
    maxChunkBytes: CHUNK_BYTES,
    dial: async (url, options) => tapped(await transportFor(url).dial(url, options), sent, received),
  });
  await new Promise((resolve) => agent.events.once('registered', resolve));
});

afterAll(async () => {
  await agent?.stop();
  await p?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

/** Resolves when every job has reached a final state on the plane. */
async function ended(jobIds: string[]): Promise<void> {
  const left = new Set(jobIds);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`jobs ${[...left].join(', ')} did not end within 20 s`));
    }, 20_000);
    const done = (jobId: string): void => {
      left.delete(jobId);
      if (left.size > 0) return;
      clearTimeout(timer);
      stop();
      resolve();
    };
    const stop = p.plane.bus.subscribe((event) => {
      if (event.kind === 'job' && TERMINAL_STATES.has(event.state)) done(event.job_id);
    });
    for (const id of jobIds) {
      void p.plane.api.getJob(id).then((job) => {
        if (job !== undefined && TERMINAL_STATES.has(job.state)) done(id);
      });
    }
  });
}

describe('the agent and batch', () => {
  it('offers batch (with every other feature), and the plane turns it on', () => {
    expect(sent[0]).toMatchObject({ types: ['RegisterNode'], data: { protocol_versions: [1, 2], wire_features: ['deflate', 'batch', 'artifacts'] } });
    expect(received.find((f) => f.types[0] === 'RegisterAck')?.data).toMatchObject({ protocol_version: 2, wire_features: ['deflate', 'batch', 'artifacts'] });
  });

  it('sends a burst of log chunks as Batch frames, whole and in order, before the result', async () => {
    const from = sent.length;
    const jobs = await p.plane.api.submitJobs(
      toNewJobs({ jobs: [{ job: { command: ['sh', '-c', `head -c ${OUTPUT_BYTES} /dev/zero | tr '\\000' x`] } }] }, p.plane.api.defaults),
    );
    const jobId = jobs[0]!.job_id;
    await ended([jobId]);
    const frames = sent.slice(from);
    const chunkFrames = frames.filter((f) => f.types.includes('LogChunk'));
    const chunks = chunkFrames.reduce((n, f) => n + f.types.filter((t) => t === 'LogChunk').length, 0);
    expect(chunks).toBe(Math.ceil(OUTPUT_BYTES / CHUNK_BYTES));
    // Pipes are read 64 KiB at a time: each read's chunks leave as one frame.
    expect(chunkFrames.some((f) => f.batch && f.types.length > 1)).toBe(true);
    expect(chunkFrames.length).toBeLessThan(chunks / 4);
    const lastChunk = frames.findLastIndex((f) => f.types.includes('LogChunk'));
    expect(frames.findIndex((f) => f.types.includes('JobResult'))).toBeGreaterThan(lastChunk);
    const logs = await p.plane.api.jobLogs(jobId);
    expect(logs?.map((l) => l.data).join('')).toBe('x'.repeat(OUTPUT_BYTES));
    expect((await p.plane.api.getJob(jobId))?.state).toBe('Completed');
  });

  it('takes the assignments of one pass from one Batch frame, each as if it came alone', async () => {
    const from = received.length;
    // A tenth of a core each: all three fit on the agent's node at once, so one pass places them.
    const job = { command: ['true'], resource_requirements: { cpu_cores: 0.1 } };
    const jobs = await p.plane.api.submitJobs(toNewJobs({ jobs: [1, 2, 3].map(() => ({ job })) }, p.plane.api.defaults));
    await ended(jobs.map((j) => j.job_id));
    const assignments = received.slice(from).filter((f) => f.types.includes('JobAssignment'));
    expect(assignments).toEqual([{ batch: true, types: ['JobAssignment', 'JobAssignment', 'JobAssignment'] }]);
    for (const job of jobs) expect((await p.plane.api.getJob(job.job_id))?.state).toBe('Completed');
  });
});

describe('the agent and a Batch from a scripted plane', () => {
  let fake: FakePlane;
  let scripted: Agent | undefined;
  let workDir: string;
  beforeAll(async () => {
    fake = await FakePlane.start();
    workDir = mkdtempSync(join(tmpdir(), 'muster-agent-batch-fake-'));
  });
  afterAll(async () => {
    await scripted?.stop();
    await fake?.close();
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  });

  /** A JobAssignment the agent can run at once (`true`, a tenth of a core, no deadline). */
  function assignment(jobId: string): Record<string, unknown> {
    const { deadline: _deadline, ...data } = sampleMessages().JobAssignment.data;
    const job = { ...data.job, command: ['true'], resource_requirements: { cpu_cores: 0.1, memory_mb: 0, disk_gb: 0 } };
    return { type: 'JobAssignment', id: `a-${jobId.slice(0, 8)}`, data: { ...data, job_id: jobId, job, execution_context: { ...data.execution_context, secrets: {} } } };
  }

  async function connected(wireFeatures: MessageData<'RegisterAck'>['wire_features']): Promise<PlaneConn> {
    await scripted?.stop();
    scripted = startAgent({ urls: [fake.url], token: 'registration-token', workDir, logger: createLogger({ level: 'silent' }), codec: 'json' });
    const conn = await fake.nextConnection();
    const reg = await conn.next('RegisterNode');
    expect(reg.data.wire_features).toContain('batch');
    conn.send('RegisterAck', {
      node_id: randomUUID(),
      session_token: 'session-token',
      session_expires_at: '2099-01-01T00:00:00Z',
      heartbeat_interval_ms: 5_000,
      protocol_version: 2,
      control_plane_id: 'fake-plane',
      resumed: false,
      wire_features: wireFeatures,
    }, CODEC_JSON);
    return conn;
  }

  function sendBatch(conn: PlaneConn, messages: unknown[]): void {
    conn.sendRaw(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Batch', data: { messages } }));
  }

  it('rejects a bad assignment in the middle of a Batch on its own, and takes those around it', async () => {
    const conn = await connected(['batch']);
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
    const bad = assignment(b);
    (bad.data as { job: { command: string[] } }).job.command = [];
    sendBatch(conn, [assignment(a), bad, assignment(c)]);
    await conn.until('each assignment is answered', () => conn.all('JobAccepted').length + conn.all('JobRejected').length === 3);
    expect(conn.all('JobAccepted').map((m) => m.data.job_id)).toEqual([a, c]);
    expect(conn.all('JobRejected')).toMatchObject([{ data: { job_id: b, attempt: 1, reason: expect.stringContaining('data.job.command') } }]);
  });

  it.each([
    ['on a session that did not turn batch on', [] as MessageData<'RegisterAck'>['wire_features'], (m: unknown) => [m]],
    ['that holds a Batch', ['batch'] as MessageData<'RegisterAck'>['wire_features'], (m: unknown) => [m, { type: 'Batch', data: { messages: [m] } }]],
  ])('takes nothing of a Batch %s', async (_name, features, messages) => {
    const conn = await connected(features);
    sendBatch(conn, messages(assignment(randomUUID())));
    // Then one alone: answered, and the first answer the plane gets.
    const alone = randomUUID();
    conn.send('JobAssignment', assignment(alone).data as MessageData<'JobAssignment'>, CODEC_JSON);
    expect((await conn.next('JobAccepted')).data.job_id).toBe(alone);
    expect(conn.all('JobRejected')).toEqual([]);
    expect(conn.all('JobAccepted')).toHaveLength(1);
  });
});
