// End to end, OpenTelemetry traces: a real plane and a real agent export OTLP/protobuf to a
// receiver in this test (as to a collector); one job is one connected trace from
// `POST /v1/jobs` through queueing, assignment, acceptance, the child process, log streaming,
// the result and its ack, across both processes, with the expected parent links; the child
// sees `TRACEPARENT`; log lines carry `trace_id`/`span_id`; no token or secret is in any
// attribute. Both processes export only at shutdown here (a long batch delay), so the test
// also shows that shutdown flushes the spans.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, type AgentProcess, type PlaneProcess } from './harness.js';
import { OtlpReceiver, type ReceivedSpan } from '../observability/otlp-receiver.js';

const h = new Harness();
let receiver: OtlpReceiver;
let plane: PlaneProcess;
let agent: AgentProcess;
let untraced: AgentProcess;
const SECRET = 'hunter2-do-not-trace';

beforeAll(async () => {
  receiver = await OtlpReceiver.start();
  // Spans leave only when the batch is flushed at shutdown: a minute's delay never comes first.
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '60000' };
  plane = await h.startPlane({ env: otel });
  [agent, untraced] = await Promise.all([
    h.startAgent(plane, { env: { ...otel, OTEL_SERVICE_NAME: 'runner-7' }, tags: { pool: 'traced' } }),
    // No endpoint: it records nothing, and passes the plane's context on unchanged.
    h.startAgent(plane, { tags: { pool: 'untraced' } }),
  ]);
}, 60_000);

afterAll(async () => {
  await h.close();
  await receiver.close();
}, 60_000);

describe('a job traced across the plane and an agent', () => {
  let jobId: string;
  let stdout: string;
  let untracedJob: string;
  let untracedStdout: string;
  let spans: ReceivedSpan[];

  /** Submits a job printing its TRACEPARENT to the agents of `pool`; its id and stdout once it ended `state`. */
  async function run(pool: string, state: string): Promise<[string, string]> {
    const answer = await plane.api.request<{ job_id: string }>('POST', '/v1/jobs', {
      job: { name: 'traced', command: ['sh', '-c', 'echo "tp=$TRACEPARENT"; echo to-stderr >&2; exit 3'] },
      execution_context: { secrets: { DEPLOY_KEY: SECRET } },
      selector: { tags: { pool } },
      max_attempts: 1,
    });
    expect(answer.status).toBe(201);
    const id = answer.body.job_id;
    expect((await plane.api.waitForJob(id, 30_000)).state).toBe(state);
    return [id, await plane.api.stdout(id)];
  }

  beforeAll(async () => {
    [jobId, stdout] = await run('traced', 'Failed');
    [untracedJob, untracedStdout] = await run('untraced', 'Failed');
    // One SIGTERM each: the agents drain and exit, then the plane; each flushes its spans.
    await untraced.proc.stop('SIGTERM', 15_000);
    await agent.proc.stop('SIGTERM', 15_000);
    expect(await plane.stop()).toBe(0);
    expect((await agent.proc.exited).code).toBe(0);
    await receiver.waitFor((s) => s.service === 'runner-7' && s.name === 'node session');
    await receiver.waitFor((s) => s.service === 'muster' && s.name === 'node session');
    spans = receiver.spans;
  }, 90_000);

  /** The one span of the job's trace named `name` from `service`. */
  function span(name: string, service: string): ReceivedSpan {
    const found = spans.filter((s) => s.name === name && s.service === service && (s.attributes['muster.job.id'] === jobId || s.traceId === traceId()));
    expect(found.map((s) => s.name), `${service}: ${name}`).toHaveLength(1);
    return found[0]!;
  }

  function traceId(): string {
    const submit = spans.find((s) => s.name === 'job submit' && s.attributes['muster.job.id'] === jobId);
    if (submit === undefined) throw new Error(`no job submit span among ${spans.map((s) => `${s.service}:${s.name}`).join(', ')}`);
    return submit.traceId;
  }

  it('exports OTLP/protobuf from both processes, under their service names', () => {
    expect(new Set(receiver.contentTypes)).toEqual(new Set(['application/x-protobuf']));
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['muster', 'runner-7']));
  });

  it('is one trace, from the request through both processes, with the expected parent links', () => {
    const plane_ = 'muster';
    const agent_ = 'runner-7';
    const request = span('POST /v1/jobs', plane_);
    const submit = span('job submit', plane_);
    const queued = span('job queued', plane_);
    const send = span('send JobAssignment', plane_);
    const take = span('process JobAssignment', agent_);
    const run = span('job run', agent_);
    const accepted = span('process JobAccepted', plane_);
    const sendResult = span('send JobResult', agent_);
    const result = span('process JobResult', plane_);
    const ack = span('process JobResultAck', agent_);
    const chunks = spans.filter((s) => s.name === 'process LogChunk' && s.attributes['muster.job.id'] === jobId);
    expect(chunks.length).toBeGreaterThanOrEqual(1);

    const all = [request, submit, queued, send, take, run, accepted, sendResult, result, ack, ...chunks];
    expect(new Set(all.map((s) => s.traceId))).toEqual(new Set([traceId()]));
    // The request is the root (no hook or handler spans between), `job submit` right under it.
    expect(request.parentSpanId).toBe('');
    expect(submit.parentSpanId).toBe(request.spanId);
    expect(spans.filter((s) => s.traceId === request.traceId && s.service === 'muster' && /^(handler|onRequest) - /.test(s.name))).toEqual([]);
    const parentOf = (s: ReceivedSpan): string => s.parentSpanId;
    expect(parentOf(queued)).toBe(submit.spanId);
    expect(parentOf(send)).toBe(submit.spanId);
    expect(parentOf(take)).toBe(send.spanId);
    expect(parentOf(run)).toBe(take.spanId);
    expect(parentOf(accepted)).toBe(take.spanId);
    for (const chunk of chunks) expect(parentOf(chunk)).toBe(run.spanId);
    expect(parentOf(sendResult)).toBe(run.spanId);
    expect(parentOf(result)).toBe(sendResult.spanId);
    expect(parentOf(ack)).toBe(result.spanId);
  });

  it('records the child process with its exit code, and gives it TRACEPARENT of its span', () => {
    const run = span('job run', 'runner-7');
    expect(run.attributes).toMatchObject({ 'process.exit.code': 3, 'muster.job.attempt': 1, 'muster.outcome': 'Failed', 'process.executable.name': 'sh' });
    expect(run.statusCode).toBe(2);
    expect(stdout).toBe(`tp=00-${run.traceId}-${run.spanId}-01\n`);
  });

  it('uses the messaging conventions for the messages between plane and node', () => {
    expect(span('send JobAssignment', 'muster').attributes).toMatchObject({
      'messaging.system': 'muster',
      'messaging.operation.type': 'send',
      'messaging.destination.name': 'JobAssignment',
      'muster.node.id': agent.nodeId,
    });
    expect(span('process JobResult', 'muster').attributes).toMatchObject({ 'messaging.operation.type': 'process', 'muster.node.id': agent.nodeId });
  });

  it('traces the node session and its registration across both processes', () => {
    const ofNode = (s: ReceivedSpan): boolean => s.attributes['muster.node.id'] === agent.nodeId;
    const agentSession = spans.find((s) => s.service === 'runner-7' && s.name === 'node session');
    const register = spans.find((s) => s.service === 'muster' && s.name === 'process RegisterNode' && ofNode(s));
    expect(agentSession?.attributes['muster.node.id']).toBe(agent.nodeId);
    expect(register?.parentSpanId).toBe(agentSession?.spanId);
    expect(register?.traceId).toBe(agentSession?.traceId);
    // The plane's own session span of each connection, named by its node once registered.
    const planeSessions = spans.filter((s) => s.service === 'muster' && s.name === 'node session');
    expect(planeSessions.map((s) => s.attributes['muster.node.id']).sort()).toEqual([agent.nodeId, untraced.nodeId].sort());
  });

  it('puts trace_id and span_id on the log lines written inside a span', () => {
    const submitted = plane.proc.jsonLines().find((l) => l.msg === 'job submitted' && l.job_id === jobId);
    expect(submitted?.trace_id).toBe(traceId());
    expect(submitted?.span_id).toMatch(/^[0-9a-f]{16}$/);
    const started = agent.proc.jsonLines().find((l) => l.msg === 'job started' && l.job_id === jobId);
    expect(started).toMatchObject({ trace_id: traceId(), span_id: span('process JobAssignment', 'runner-7').spanId });
    const assigned = plane.proc.jsonLines().find((l) => l.msg === 'job assigned' && l.job_id === jobId);
    expect(assigned).toMatchObject({ trace_id: traceId(), span_id: span('send JobAssignment', 'muster').spanId });
    // Outside any span: no ids.
    expect(plane.proc.jsonLines().find((l) => l.msg === 'control plane ready')).not.toHaveProperty('trace_id');
  });

  it('puts no token or secret in any attribute', () => {
    const values = spans.flatMap((s) => Object.values(s.attributes).map(String));
    for (const needle of [SECRET, plane.info.adminToken, 'Bearer']) {
      expect(values.filter((v) => v.includes(needle))).toEqual([]);
    }
    // JWTs (the admin token, the node's registration and session tokens) all start so.
    expect(values.filter((v) => v.startsWith('eyJ'))).toEqual([]);
  });

  it('with an agent that does not trace: the plane\'s spans of the job hang under its own send, and the job sees that context', () => {
    const ofJob = spans.filter((s) => s.attributes['muster.job.id'] === untracedJob);
    const send = ofJob.find((s) => s.name === 'send JobAssignment');
    expect(send?.service).toBe('muster');
    expect(ofJob.filter((s) => s.service !== 'muster')).toEqual([]);
    for (const name of ['process JobAccepted', 'process LogChunk', 'process JobResult']) {
      const found = ofJob.filter((s) => s.name === name);
      expect(found.length, name).toBeGreaterThanOrEqual(1);
      for (const s of found) expect(s.parentSpanId, name).toBe(send?.spanId);
    }
    expect(untracedStdout).toBe(`tp=00-${send?.traceId}-${send?.spanId}-01\n`);
  });
});
