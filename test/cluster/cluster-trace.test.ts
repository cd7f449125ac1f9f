// One job, one trace, across a cluster: a real nats-server (JetStream, a free port), two
// replicas and an agent as real processes, all exporting OTLP/protobuf to a receiver in this test
// (otlp-receiver.ts, as to a collector). The job is submitted through replica A's API; the agent
// is served by replica B, whose scheduler places it. The trace runs from A's `POST /v1/jobs`
// through the job's context kept with it in JetStream, B's handling of the job bucket's entry
// over NATS (a consumer span under A's submission), B's assignment, the agent's run, B's storing of the result
// and the agent's handling of its ack, each span under the one that caused it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, waitFor, type AgentProcess } from '../e2e/harness.js';
import { OtlpReceiver, type ReceivedSpan } from '../observability/otlp-receiver.js';
import { NatsServer } from './nats-server.js';
import { ReplicaCluster, type Replica } from './replica-process.js';

const h = new Harness();
let nats: NatsServer;
let receiver: OtlpReceiver;
let a: Replica;
let b: Replica;
let agent: AgentProcess;
let jobId: string;
let spans: ReceivedSpan[];

beforeAll(async () => {
  [nats, receiver] = await Promise.all([NatsServer.start(), OtlpReceiver.start()]);
  // Batches leave every 100 ms, so that the spans arrive while the processes run.
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' };
  const cluster = new ReplicaCluster(h, { natsUrl: nats.url, env: otel });
  // One after the other: on a loaded machine two start-ups at once may each miss the harness's 20 s.
  a = await cluster.start('replica-a', { env: { OTEL_SERVICE_NAME: 'replica-a' } });
  b = await cluster.start('replica-b', { env: { OTEL_SERVICE_NAME: 'replica-b' } });
  // The agent tries B first: B owns it, and only B places jobs on it.
  agent = await cluster.startAgent(b, { env: { ...otel, OTEL_SERVICE_NAME: 'runner' } });
  // A lists B's nodes once it has heard B's lease (its peer poll), not necessarily at once.
  await waitFor(async () => (await a.api.node(agent.nodeId))?.owner === 'replica-b', 10_000, 'A to list the agent as owned by replica-b');
  jobId = await a.api.submit({ job: { name: 'across', command: ['sh', '-c', 'echo across'] }, max_attempts: 1 });
  expect((await a.api.waitForJob(jobId, 20_000)).state).toBe('Completed');
  // The last spans of the job: the result stored on B, its ack handled on the agent.
  await receiver.waitFor((s) => s.service === 'runner' && s.name === 'process JobResultAck' && s.attributes['muster.job.id'] === jobId);
  await receiver.waitFor((s) => s.service === 'replica-b' && s.name === 'process JobResult' && s.attributes['muster.job.id'] === jobId);
  spans = receiver.spans;
}, 90_000);

afterAll(async () => {
  await h.close();
  await receiver?.close();
  await nats?.stop();
}, 60_000);

describe('a job traced across two replicas, NATS and an agent', () => {
  /** The trace of the job: that of A's `job submit` span, which names it. */
  function traceId(): string {
    const submit = spans.find((s) => s.name === 'job submit' && s.attributes['muster.job.id'] === jobId);
    if (submit === undefined) throw new Error(`no job submit span among ${spans.map((s) => `${s.service}:${s.name}`).join(', ')}`);
    return submit.traceId;
  }

  /** The one span of the job's trace from `service` named `name` (and matching `where`). */
  function one(service: string, name: string, where: (s: ReceivedSpan) => boolean = () => true): ReceivedSpan {
    const found = spans.filter((s) => s.traceId === traceId() && s.service === service && s.name === name && where(s));
    expect(found.map((s) => `${s.service}:${s.name}`), `${service}: ${name}`).toHaveLength(1);
    return found[0]!;
  }

  it('is one trace from the request on A, over NATS, through B and the agent, each span under its cause', () => {
    const request = one('replica-a', 'POST /v1/jobs');
    const submit = one('replica-a', 'job submit');
    // The job crosses to B as an entry of the job bucket, which B's store watches: B handles it in
    // a consumer span under the context the job carries (its submission on A).
    const heardOnB = one('replica-b', 'process $KV.muster-jobs', (s) => s.attributes['messaging.destination.name'] === `$KV.muster-jobs.${jobId}`);
    const send = one('replica-b', 'send JobAssignment');
    const take = one('runner', 'process JobAssignment');
    const run = one('runner', 'job run');
    const accepted = one('replica-b', 'process JobAccepted');
    const sendResult = one('runner', 'send JobResult');
    const result = one('replica-b', 'process JobResult');
    const ack = one('runner', 'process JobResultAck');

    expect(request.parentSpanId).toBe('');
    expect(submit.parentSpanId).toBe(request.spanId);
    expect(heardOnB.parentSpanId).toBe(submit.spanId);
    expect(heardOnB.kind).toBe(5); // CONSUMER
    expect(heardOnB.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.operation.type': 'process' });
    // B places the job under its submission on A: the context travelled with the job in JetStream.
    expect(send.parentSpanId).toBe(submit.spanId);
    expect(send.attributes).toMatchObject({ 'muster.node.id': agent.nodeId, 'muster.job.id': jobId });
    expect(take.parentSpanId).toBe(send.spanId);
    expect(run.parentSpanId).toBe(take.spanId);
    expect(accepted.parentSpanId).toBe(take.spanId);
    expect(sendResult.parentSpanId).toBe(run.spanId);
    expect(result.parentSpanId).toBe(sendResult.spanId);
    expect(ack.parentSpanId).toBe(result.spanId);
    expect(run.attributes).toMatchObject({ 'process.exit.code': 0, 'muster.outcome': 'Completed' });
  });

  it("has no span of the job's trace on a process it did not pass through: A neither assigns nor hears from the agent", () => {
    const onA = spans.filter((s) => s.traceId === traceId() && s.service === 'replica-a').map((s) => s.name);
    expect(onA.filter((n) => n === 'send JobAssignment' || n.startsWith('process Job'))).toEqual([]);
  });
});
