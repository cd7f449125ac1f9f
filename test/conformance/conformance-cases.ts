// Transport conformance: the same cases, on protocol versions 1 and 2, against a real in-process
// control plane, over every transport it serves (tcp, unix, tls, ws, wss, grpc, grpcs):
// registration and heartbeats in both codecs, a job round trip, every protocol error a node can
// provoke with its fatal or non-fatal behaviour, split and oversize frames, a node that stops
// reading, a node that drops its connection, and a session replaced by a newer connection. A
// case that a transport's framing makes impossible is skipped for that transport, saying why.
// Each version's cases are registered by a test file of its own (conformance-v1.test.ts and
// conformance-v2.test.ts).
import { randomUUID } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CODEC_JSON, CODEC_MSGPACK, codecByName, encodeBody, type CodecName } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import type { ErrorCode } from '../../protocol/errors.js';
import type { EnvelopeOf } from '../../protocol/messages.js';
import type { ControlPlane } from '../../supervisor/control-plane.js';
import type { NewJob } from '../../supervisor/store/job-store.js';
import { TokenAuthority } from '../../supervisor/tokens/tokens.js';
import type { Connection } from '../../transports/transport.js';
import { heartbeatMessage } from '../supervisor/node-client.js';
import {
  JWT_SECRET,
  LIVENESS_WINDOW_MS,
  MAX_SEND_BUFFER_BYTES,
  NODE_HOSTNAME,
  TIMING,
  TRANSPORTS,
  startFixturePlane,
  stateOf,
  targetOf,
  until,
  viewsOf,
  type PlaneFixture,
  type Target,
  type TransportCase,
  type TransportKind,
} from './plane-fixture.js';
import { ProtocolClient, registerMessage, type Received, type RegisterOptions } from './protocol-client.js';
import type { RawLink } from './raw-links.js';

const CODECS: readonly CodecName[] = ['json', 'msgpack'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** How often the suite's live nodes heartbeat: well inside the plane's interval. */
const HEARTBEAT_EVERY_MS = TIMING.heartbeatIntervalMs / 3;
/** The size of the environment of the jobs that a node that stops reading is sent. */
const BIG_JOB_BYTES = 128 * 1024;

/** Length (and codec byte) of a stream frame header, without a body. */
function header(length: number, codecByte?: number): Uint8Array {
  const bytes = Buffer.alloc(codecByte === undefined ? 4 : 5);
  bytes.writeUInt32BE(length, 0);
  if (codecByte !== undefined) bytes[4] = codecByte;
  return bytes;
}

/** A job for the node tagged `conformance: tag`, and no other. */
function newJob(tag: string, environment: Record<string, string> = { CI: 'true' }): NewJob {
  return {
    job: {
      name: `conformance ${tag}`,
      image: 'node:20-bookworm',
      command: ['npm', 'test'],
      environment,
      timeout: { secs: 600, nanos: 0 },
      resource_requirements: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 },
    },
    execution_context: {
      workspace_id: 'ws-conformance',
      pipeline_id: 'pl-1',
      build_number: 7,
      git_ref: 'refs/heads/main',
      variables: { TARGET: tag },
      secrets: {},
    },
    priority: 'High',
    selector: { tags: { conformance: tag } },
    max_attempts: 3,
  };
}

/** How a row of the error table is provoked: by what the client sends, or by sending nothing. */
interface ErrorRow {
  code: ErrorCode;
  fatal: boolean;
  /** What the node does, for the test's name. */
  what: string;
  /** Register first (the code is one of a registered node). */
  registered?: boolean;
  /** Why the protocol cannot produce this code on a transport kind: the row is skipped there. */
  cannot?: Partial<Record<TransportKind, string>>;
  /** Sends what provokes the error, on a raw link: the transports' own client code cannot mask what the plane does. */
  provoke(c: ProtocolClient<RawLink>, ctx: RowContext): Promise<void>;
  /** Further checks of the Error. */
  check?(error: Received<'Error'>, c: ProtocolClient<RawLink>): void;
}

interface RowContext {
  plane: ControlPlane;
  target: Target;
  /** What the suite's nodes send as `protocol_versions`: none (version 1), or `[1, 2]`. */
  versions: Pick<RegisterOptions, 'protocolVersions'>;
}

/** The protocol versions the suite runs every case on, and what its nodes offer for each. */
const VERSIONS = {
  1: {},
  2: { protocolVersions: [1, 2] },
} as const satisfies Record<number, Pick<RegisterOptions, 'protocolVersions'>>;

export type ProtocolVersion = keyof typeof VERSIONS;

function registrationToken(plane: ControlPlane, o: { sub?: string } = {}): Promise<string> {
  return plane.tokens.mintRegistrationToken({ ttlSeconds: 600, ...o });
}

const ERROR_ROWS: readonly ErrorRow[] = [
  {
    code: 'malformed_frame',
    fatal: true,
    what: 'a frame of length 0 (an empty message or body on message transports)',
    // On message transports there is no length field, but an empty message is still a body
    // that does not decode (neither JSON nor MessagePack reads zero bytes).
    provoke: async (c) => {
      const link = c.link;
      if (link.kind === 'stream') await link.writeBytes(header(0));
      else if (link.kind === 'websocket') link.sendMessage(new Uint8Array(0), false);
      else link.sendGrpcFrame({ codec: CODEC_JSON, body: new Uint8Array(0), encrypted: false });
    },
    check: (error) => expect(error.codecByte).toBe(CODEC_JSON),
  },
  {
    code: 'malformed_frame',
    fatal: true,
    what: 'a JSON body that does not decode',
    provoke: async (c) => c.sendFrame(CODEC_JSON, Buffer.from('{"type": "RegisterNode", "data": ')),
  },
  {
    code: 'malformed_frame',
    fatal: true,
    what: 'a MessagePack envelope that is not a map',
    provoke: async (c) => c.send('RegisterNode', 'msgpack'),
    check: (error) => expect(error.codec).toBe('msgpack'),
  },
  {
    code: 'frame_too_large',
    fatal: true,
    what: 'a frame over max_frame_bytes',
    provoke: async (c, { target }) => {
      const link = c.link;
      const over = target.maxFrameBytes + 1;
      // A stream peer announces the length; the plane must answer before any of the body.
      if (link.kind === 'stream') await link.writeBytes(header(over, CODEC_JSON));
      else if (link.kind === 'websocket') link.sendMessage(new Uint8Array(over), true);
      else link.sendGrpcFrame({ codec: CODEC_MSGPACK, body: new Uint8Array(over), encrypted: false });
    },
    check: (_error, c) => {
      if (c.link.kind === 'stream') expect(c.link.bytesWritten).toBe(5);
    },
  },
  {
    code: 'unsupported_codec',
    fatal: true,
    what: 'a codec this version does not know',
    cannot: {
      // A WebSocket message is text (JSON) or binary (MessagePack): there is no third kind,
      // so no message names an unknown codec.
      websocket: 'WebSocket messages are text or binary, both known codecs: no unknown codec can be sent',
    },
    provoke: async (c, { plane, versions }) => {
      const body = encodeBody(CODEC_JSON, registerMessage({ token: await registrationToken(plane), ...versions }));
      const link = c.link;
      if (link.kind === 'grpc') link.sendGrpcFrame({ codec: 0, body, encrypted: false }); // CODEC_UNSPECIFIED
      else link.send(0x07, body);
    },
    check: (error) => expect(error.codecByte).toBe(CODEC_JSON),
  },
  {
    code: 'not_registered',
    fatal: true,
    what: 'a Heartbeat before RegisterNode',
    provoke: async (c) => c.send(heartbeatMessage(randomUUID(), 'Ready', 'hb-1')),
    check: (error) => expect(error.message.reply_to).toBe('hb-1'),
  },
  {
    code: 'register_timeout',
    fatal: true,
    what: 'nothing at all within register_timeout',
    provoke: async () => {},
    check: (error) => expect(error.message.reply_to).toBeUndefined(),
  },
  {
    code: 'auth_failed',
    fatal: true,
    what: 'a token signed with another secret',
    provoke: async (c, { versions }) => {
      const other = new TokenAuthority(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
      c.send(registerMessage({ token: await other.mintRegistrationToken({ ttlSeconds: 600 }), id: 'reg-7', ...versions }));
    },
    check: (error) => expect(error.message.reply_to).toBe('reg-7'),
  },
  {
    code: 'token_expired',
    fatal: true,
    what: 'an expired token',
    provoke: async (c, { versions }) => {
      const past = new TokenAuthority(new TextEncoder().encode(JWT_SECRET), { now: () => new Date(Date.now() - 3_600_000) });
      c.send(registerMessage({ token: await past.mintRegistrationToken({ ttlSeconds: 60 }), id: 'reg-8', ...versions }));
    },
    check: (error) => expect(error.message.reply_to).toBe('reg-8'),
  },
  {
    code: 'forbidden',
    fatal: true,
    what: 'a registration token whose sub is another hostname',
    provoke: async (c, { plane, versions }) => {
      const token = await registrationToken(plane, { sub: 'someone-else.example.test' });
      c.send(registerMessage({ token, id: 'reg-9', ...versions }));
    },
    check: (error) => expect(error.message.reply_to).toBe('reg-9'),
  },
  {
    code: 'unknown_type',
    fatal: false,
    what: 'a type this version does not know, once registered',
    registered: true,
    provoke: async (c) => c.send({ type: 'Telemetry', id: 't-1', data: { anything: true } }, c.codec),
    check: (error) => {
      expect(error.message.reply_to).toBe('t-1');
      expect(error.message.data.field).toBeUndefined();
    },
  },
  {
    code: 'invalid_message',
    fatal: false,
    what: 'a Heartbeat without its status, once registered',
    registered: true,
    provoke: async (c) => {
      const hb = heartbeatMessage(c.nodeId!, 'Ready', 'hb-3') as unknown as { data: Record<string, unknown> };
      delete hb.data.status;
      c.send(hb, c.codec);
    },
    check: (error) => {
      expect(error.message.data.field).toBe('data.status');
      expect(error.message.reply_to).toBe('hb-3');
    },
  },
];

/**
 * Registers every case for one protocol version, against two planes of its own (plain and TLS):
 * each version is a test file of its own, so that vitest runs the two side by side.
 */
export function describeConformance(version: ProtocolVersion): void {
const versions = VERSIONS[version];
let plain: PlaneFixture;
let secure: PlaneFixture;

beforeAll(async () => {
  [plain, secure] = await Promise.all([startFixturePlane({ tls: false }), startFixturePlane({ tls: true })]);
});

afterAll(async () => {
  await Promise.all([plain?.close(), secure?.close()]);
});

describe(`protocol version ${version}`, () => {
describe.each(TRANSPORTS.map((t) => [t.scheme, t] as const))('over %s', (_scheme, transport: TransportCase) => {
  let fixture: PlaneFixture;
  let plane: ControlPlane;
  let target: Target;
  /** Clients a test opened: dropped after it. */
  const opened: ProtocolClient<RawLink | Connection>[] = [];
  /** Jobs a test left queued or running: cancelled after it. */
  const leftJobs: string[] = [];

  beforeAll(() => {
    fixture = transport.secure ? secure : plain;
    plane = fixture.plane;
    target = targetOf(fixture, transport);
  });

  afterEach(async () => {
    const closing = opened.splice(0).map(async (c) => {
      c.stopHeartbeats();
      const link = c.link;
      if ('destroy' in link) link.destroy();
      else if (!c.isClosed) await link.close();
    });
    await Promise.all(closing);
    await Promise.all(leftJobs.splice(0).map((id) => plane.api.cancelJob(id)));
  });

  async function dialed(): Promise<ProtocolClient<Connection>> {
    const c = await ProtocolClient.dial(target);
    opened.push(c);
    return c;
  }

  async function raw(): Promise<ProtocolClient<RawLink>> {
    const c = await ProtocolClient.raw(target);
    opened.push(c);
    return c;
  }

  async function register(c: ProtocolClient, o: Partial<RegisterOptions> = {}): Promise<Received<'RegisterAck'>> {
    return c.register({ token: await registrationToken(plane), ...versions, ...o });
  }

  /**
   * Sends a Heartbeat and waits until the plane has taken it (the node's `last_heartbeat` moves
   * past the moment it was sent): the connection works, and the node is still known and live.
   */
  async function heartbeatTaken(c: ProtocolClient): Promise<void> {
    const before = Date.parse(viewsOf(plane, c.nodeId)[0]?.last_heartbeat ?? '1970-01-01T00:00:00Z');
    await until('the clock passes the last heartbeat', () => Date.now() > before);
    const sent = Date.now();
    c.heartbeat();
    await until(`the plane takes a Heartbeat of ${c.nodeId}`, () => {
      const view = viewsOf(plane, c.nodeId)[0];
      return view !== undefined && Date.parse(view.last_heartbeat) >= sent;
    });
  }

  /** The connection is open, a heartbeat is taken, nothing unasked arrived, and the node is `ready`, once. */
  async function stillReady(c: ProtocolClient): Promise<void> {
    expect(c.isClosed).toBe(false);
    await heartbeatTaken(c);
    expect(c.unread()).toEqual([]);
    expect(viewsOf(plane, c.nodeId).map((v) => v.state)).toEqual(['ready']);
  }

  async function expectError(c: ProtocolClient, code: ErrorCode, fatal: boolean): Promise<Received<'Error'>> {
    const error = await c.next('Error');
    expect(error.message.data).toMatchObject({ code, fatal });
    expect(error.message.data.message).toEqual(expect.any(String));
    return error;
  }

  describe('1. registration and heartbeats', () => {
    it.each(CODECS)('registers in %s: RegisterAck as PROTOCOL.md says, and heartbeats keep the node ready', async (codec) => {
      const c = await dialed();
      const before = Date.now();
      const ack = await register(c, { codec, id: 'reg-1' });
      expect(ack.codec).toBe(codec);
      expect(ack.message.reply_to).toBe('reg-1');
      const data = ack.message.data;
      expect(data).toEqual({
        node_id: expect.stringMatching(UUID),
        session_token: expect.any(String),
        session_expires_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
        heartbeat_interval_ms: TIMING.heartbeatIntervalMs,
        protocol_version: version,
        control_plane_id: plane.id,
        resumed: false,
        // A version 2 session's RegisterAck adds its own fields; a version 1 one has none of them.
        ...(version === 2 ? { wire_features: [], compress_min_bytes: expect.any(Number), artifact_window_bytes: expect.any(Number) } : {}),
      });
      expect(Date.parse(data.session_expires_at)).toBeGreaterThan(before);
      expect(decodeJwt(data.session_token)).toMatchObject({ aud: 'muster-node', scope: 'node:session', sub: data.node_id });
      expect(viewsOf(plane, data.node_id)).toEqual([
        expect.objectContaining({ hostname: NODE_HOSTNAME, state: 'ready', owner: plane.id, running_jobs: [] }),
      ]);
      await stillReady(c);
      await stillReady(c);
    });

    it.each(CODECS)('answers on the wire in the codec of RegisterNode (%s), whatever a later frame uses', async (codec) => {
      const c = await raw();
      await register(c, { codec });
      c.send({ type: 'Telemetry', id: 't-9', data: {} }, codec === 'json' ? 'msgpack' : 'json');
      const error = await expectError(c, 'unknown_type', false);
      expect(error.codec).toBe(codec);
      const binary = codec === 'msgpack';
      const link = c.link;
      // What the wire itself says, read without the transport's own client code.
      if (link.kind === 'websocket') expect(link.binaryFlags).toEqual([binary, binary]);
      if (link.kind === 'grpc') {
        const expected = [codecByName(codec), false];
        expect(link.frames.map((f) => [f.codec, f.encrypted])).toEqual([expected, expected]);
      }
      await stillReady(c);
    });
  });

  describe('2. a job round trip', () => {
    it.each(CODECS)('assigns a job, takes JobAccepted, LogChunk and JobResult in %s, acks the result and stores it', async (codec) => {
      const tag = `${transport.scheme}-${randomUUID()}`;
      const c = await dialed();
      await register(c, { codec, tags: { conformance: tag } });
      c.startHeartbeats(HEARTBEAT_EVERY_MS);
      const job = await plane.api.submitJob(newJob(tag));
      leftJobs.push(job.job_id);

      const assignment = await c.next('JobAssignment');
      expect(assignment.codec).toBe(codec);
      expect(assignment.message.data).toMatchObject({
        job_id: job.job_id,
        attempt: 1,
        job: job.job,
        execution_context: job.execution_context,
        priority: 'High',
      });
      const { job_id, attempt } = assignment.message.data;
      const reply = assignment.message.id === undefined ? {} : { reply_to: assignment.message.id };
      c.send({ type: 'JobAccepted', ...reply, data: { job_id, attempt } }, codec);
      c.send({ type: 'LogChunk', data: { job_id, attempt, stream: 'stdout', seq: 0, data: 'all tests passed\n' } }, codec);
      const result: EnvelopeOf<'JobResult'>['data']['result'] = {
        status: 'Completed',
        exit_code: 0,
        stdout: 'all tests passed\n',
        stderr: '',
        artifacts: ['dist/app.tar.gz'],
        started_at: new Date(Date.now() - 1000).toISOString(),
        completed_at: new Date().toISOString(),
      };
      const metrics = { duration_ms: 1000, cpu_time_ms: 800, memory_peak_mb: 64 };
      c.send({ type: 'JobResult', id: 'res-1', data: { job_id, attempt, node_id: c.nodeId, result, metrics } }, codec);

      const resultAck = await c.next('JobResultAck');
      expect(resultAck.codec).toBe(codec);
      expect(resultAck.message.data).toEqual({ job_id, attempt });
      expect(resultAck.message.reply_to).toBe('res-1');
      const stored = await plane.api.getJob(job_id);
      expect(stored).toMatchObject({ state: 'Completed', attempt: 1, result, metrics });
      expect((await plane.api.jobLogs(job_id))?.map((l) => [l.stream, l.seq, l.data])).toEqual([['stdout', 0, 'all tests passed\n']]);
      c.stopHeartbeats();
      await stillReady(c);
    });
  });

  describe('3. protocol errors', () => {
    for (const row of ERROR_ROWS) {
      const name = `${row.code} (${row.fatal ? 'fatal' : 'non-fatal'}): ${row.what}`;
      const cannot = row.cannot?.[transport.kind];
      if (cannot !== undefined) {
        // The protocol cannot apply here; `cannot` says why (see the row above).
        it.skip(`${name} — cannot apply: ${cannot}`, () => {});
        continue;
      }
      it(name, async () => {
        const c = await raw();
        if (row.registered === true) await register(c);
        const nodesBefore = plane.api.listNodes().length;
        await row.provoke(c, { plane, target, versions });
        const error = await expectError(c, row.code, row.fatal);
        row.check?.(error, c);
        if (row.fatal) {
          await c.closedWithin();
          expect(c.unread()).toEqual([]);
          if (row.registered !== true) expect(plane.api.listNodes().length).toBe(nodesBefore);
        } else {
          await stillReady(c);
        }
      });
    }
  });

  describe('4. split frames', () => {
    if (transport.kind !== 'stream') {
      // one message is one frame: a message cannot be split
      it.skip('a frame written one byte at a time — cannot apply: one message is one frame: a message cannot be split', () => {});
      return;
    }

    it('takes a RegisterNode, a Heartbeat and an unknown type written one byte at a time', async () => {
      const c = await raw();
      const link = c.link as Extract<RawLink, { kind: 'stream' }>;
      const oneByteAtATime = async (bytes: Uint8Array): Promise<void> => {
        for (const byte of bytes) await link.writeBytes(Uint8Array.of(byte));
      };
      const token = await registrationToken(plane);
      await oneByteAtATime(encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, registerMessage({ token, ...versions }))));
      const ack = await c.next('RegisterAck');
      c.nodeId = ack.message.data.node_id;
      // Two frames in a row, both split: a heartbeat in MessagePack, then an unknown type in JSON.
      const hb = encodeFrame(CODEC_MSGPACK, encodeBody(CODEC_MSGPACK, heartbeatMessage(c.nodeId)));
      const unknown = encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, { type: 'Telemetry', id: 't-2', data: {} }));
      await oneByteAtATime(Buffer.concat([hb, unknown]));
      const error = await expectError(c, 'unknown_type', false);
      expect(error.message.reply_to).toBe('t-2');
      await stillReady(c);
    });
  });

  describe('5. oversize frames', () => {
    it('answers a registered node that sends a frame over max_frame_bytes with frame_too_large, then closes', async () => {
      const c = await raw();
      await register(c);
      await ERROR_ROWS.find((r) => r.code === 'frame_too_large')!.provoke(c, { plane, target, versions });
      await expectError(c, 'frame_too_large', true);
      await c.closedWithin();
      expect(c.unread()).toEqual([]);
      expect(viewsOf(plane, c.nodeId)).toHaveLength(1);
    });

    // A RegisterNode has a size of its own far below max_frame_bytes (protocol/message-limits.ts):
    // the padded frame is of a type without one, which the plane reads and answers `unknown_type`.
    it('takes a frame of exactly max_frame_bytes (a padded message of a type it does not know)', async () => {
      const c = await raw();
      await register(c);
      const message = { type: 'Probe', id: 'p-max', data: { padding: '' } };
      // The frame's length counts its codec byte: a body one byte short of the limit fills it.
      const bodyBytes = target.maxFrameBytes - 1;
      message.data.padding = 'x'.repeat(bodyBytes - encodeBody(CODEC_JSON, message).length);
      const body = encodeBody(CODEC_JSON, message);
      expect(body.length).toBe(bodyBytes);
      c.sendFrame(CODEC_JSON, body);
      const answer = await c.next('Error');
      expect(answer.message).toMatchObject({ reply_to: 'p-max', data: { code: 'unknown_type', fatal: false } });
      await stillReady(c);
    });
  });

  describe('6. a node that stops reading', () => {
    it("closes its connection once the plane's send buffer passes the limit; other nodes go on", async () => {
      const tag = `${transport.scheme}-${randomUUID()}`;
      const other = await dialed();
      await register(other, { tags: { conformance: `${tag}-other` } });
      other.startHeartbeats(HEARTBEAT_EVERY_MS);
      const slow = await raw();
      await register(slow, { tags: { conformance: tag }, cpuCores: 10_000 });
      // It goes on writing: heartbeats keep it live for as long as its connection is there.
      slow.startHeartbeats(HEARTBEAT_EVERY_MS);
      slow.link.pauseReading();

      // JobAssignments of 128 KiB each, one at a time: each is sent before the next is queued,
      // so a node that reads never has more than one queued, and one that does not read piles
      // them up past the limit (after what socket buffers and flow-control windows take).
      const environment = { BLOB: 'x'.repeat(BIG_JOB_BYTES) };
      const cap = (64 * 1024 * 1024) / BIG_JOB_BYTES;
      for (let submitted = 0; !slow.isClosed; submitted++) {
        if (submitted === cap) throw new Error(`the plane queued ${submitted} assignments for a node that does not read`);
        const { job_id } = await plane.api.submitJob(newJob(tag, environment));
        leftJobs.push(job_id);
        await until('the plane sends the job, or closes the connection', async () => {
          return slow.isClosed || (await plane.api.getJob(job_id))?.state !== 'Queued';
        });
      }
      await slow.closedWithin();
      const sentToSlow = await Promise.all(leftJobs.map(async (id) => (await plane.api.getJob(id))?.node_id === slow.nodeId));
      // It was closed for what it did not read: more than the limit had been sent its way.
      expect(sentToSlow.filter(Boolean).length * BIG_JOB_BYTES).toBeGreaterThanOrEqual(MAX_SEND_BUFFER_BYTES);
      slow.stopHeartbeats();

      // Its heartbeats no longer arrive: the node is dead once its window passes.
      await until('the node that stopped reading is dead', () => stateOf(plane, slow.nodeId) === 'dead', LIVENESS_WINDOW_MS + 5_000);
      // The other node noticed nothing, and the plane still serves it.
      expect(plane.api.isReady()).toBe(true);
      other.stopHeartbeats();
      await stillReady(other);
      other.startHeartbeats(HEARTBEAT_EVERY_MS);
      const job = await plane.api.submitJob(newJob(`${tag}-other`));
      leftJobs.push(job.job_id);
      const assignment = await other.next('JobAssignment');
      expect(assignment.message.data.job_id).toBe(job.job_id);
    });
  });

  describe('7. an abrupt disconnect', () => {
    it('shows a node that dropped its connection without Deregister as dead once its heartbeat window passes', async () => {
      const live = await Promise.all(CODECS.map(async (codec) => {
        const c = await dialed();
        await register(c, { codec });
        c.startHeartbeats(HEARTBEAT_EVERY_MS);
        return c;
      }));
      const gone = await raw();
      await register(gone);
      const lastSent = Date.now();
      gone.heartbeat();
      await until('the heartbeat is taken', () => Date.parse(viewsOf(plane, gone.nodeId)[0]!.last_heartbeat) >= lastSent);
      gone.link.destroy();

      await until('the dropped node is dead', () => stateOf(plane, gone.nodeId) === 'dead', LIVENESS_WINDOW_MS + 5_000);
      // Not before its window: missed heartbeats plus one interval of grace since its last frame.
      expect(Date.now() - lastSent).toBeGreaterThanOrEqual(LIVENESS_WINDOW_MS);
      expect(viewsOf(plane, gone.nodeId)).toHaveLength(1);
      // The nodes that went on heartbeating in either codec stayed ready all the while.
      for (const c of live) {
        expect(viewsOf(plane, c.nodeId).map((v) => v.state)).toEqual(['ready']);
        c.stopHeartbeats();
        await stillReady(c);
      }
    });
  });

  describe('8. session_replaced', () => {
    it('replaces the connection of a node that resumes on another: the old one gets session_replaced and is closed', async () => {
      const first = await dialed();
      await register(first);
      const nodeId = first.nodeId!;
      const second = await dialed();
      const ack = await second.register({
        token: first.sessionToken!,
        resume: { node_id: nodeId, running_jobs: [], unacked_results: [] },
      });
      expect(ack.message.data).toMatchObject({ node_id: nodeId, resumed: true });
      const error = await expectError(first, 'session_replaced', true);
      expect(error.message.reply_to).toBeUndefined();
      await first.closedWithin();
      expect(first.unread()).toEqual([]);
      expect(viewsOf(plane, nodeId)).toHaveLength(1);
      await stillReady(second);
    });
  });

  describe.runIf(version === 2)('9. batch (version 2)', () => {
    it('turns batch on, and handles each envelope of a Batch as if alone: a bad one answered on its id, those around it taken', async () => {
      const tag = `${transport.scheme}-${randomUUID()}`;
      const c = await dialed();
      const ack = await register(c, { tags: { conformance: tag }, wireFeatures: ['batch'] });
      expect(ack.message.data.wire_features).toContain('batch');
      const job = await plane.api.submitJob(newJob(tag));
      leftJobs.push(job.job_id);
      const { job_id, attempt } = (await c.next('JobAssignment')).message.data;
      const result: EnvelopeOf<'JobResult'>['data']['result'] = {
        status: 'Completed',
        exit_code: 0,
        stdout: '',
        stderr: '',
        artifacts: [],
        started_at: new Date(Date.now() - 1000).toISOString(),
        completed_at: new Date().toISOString(),
      };
      const metrics = { duration_ms: 1000, cpu_time_ms: 800, memory_peak_mb: 64 };
      c.send({
        type: 'Batch',
        id: 'batch-1',
        data: {
          messages: [
            { type: 'JobAccepted', id: 'acc-1', data: { job_id, attempt } },
            { type: 'LogChunk', id: 'log-1', data: { job_id, attempt, stream: 'stdout', seq: 0, data: 'batched\n' } },
            { type: 'Heartbeat', id: 'bad-1', data: {} },
            { type: 'JobResult', id: 'res-1', data: { job_id, attempt, node_id: c.nodeId, result, metrics } },
          ],
        },
      });
      const error = await expectError(c, 'invalid_message', false);
      expect(error.message.reply_to).toBe('bad-1');
      expect((await c.next('JobResultAck')).message.reply_to).toBe('res-1');
      expect(await plane.api.getJob(job_id)).toMatchObject({ state: 'Completed', result });
      expect((await plane.api.jobLogs(job_id))?.map((l) => l.data)).toEqual(['batched\n']);
      await stillReady(c);
    });
  });
});
});
}
