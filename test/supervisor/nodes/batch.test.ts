// The `batch` wire feature (PROTOCOL.md section 8) over real TCP against a real plane: agreed
// when a version 2 node offers it; each envelope of a Batch is handled in order as if it had
// come in its own frame (validated, answered on its own id, counted on its own against the
// rates), a bad one in the middle answered on its id while those around it are handled, a fatal
// one stopping the rest; a nested, empty or oversized Batch is `invalid_message` on the outer id
// with none of it handled; a Batch on a session without the feature is `unknown_type`; a
// bystander is unaffected; and the plane's assignments to one node in one pass come in one Batch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toNewJobs } from '../../../supervisor/admin/job-request.js';
import { BATCH_MAX } from '../../../protocol/messages.js';
import { heartbeatMessage, type NodeClient, type Received } from '../node-client.js';
import { sampleMessages } from '../../protocol/sample-messages.js';
import { startSecurityPlane, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
let bystander: NodeClient;
beforeAll(async () => {
  p = await startSecurityPlane();
  bystander = await p.client();
  await bystander.register({ token: await p.registrationToken(), hostname: 'bystander.example.test', protocolVersions: [1, 2], wireFeatures: ['batch'] });
});
afterAll(async () => p?.stop());

let tagCount = 0;
/** A registered node that agreed to `batch`, with tags of its own (so that jobs can be aimed at it). */
async function batching(): Promise<{ c: NodeClient; tags: Record<string, string> }> {
  const tags = { batch: `node-${++tagCount}` };
  const c = await p.client();
  const ack = await c.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: ['batch'], tags });
  expect(ack.data).toMatchObject({ protocol_version: 2, wire_features: ['batch'] });
  return { c, tags };
}

/** An unknown type with an id: if handled, the plane answers `unknown_type` on that id. */
function telemetry(id: string): Record<string, unknown> {
  return { type: 'Telemetry', id, data: {} };
}

/**
 * Sends a probe (an unknown type) and returns every frame that came before its answer: all the
 * plane said about what was sent before the probe, since the plane answers in order.
 */
async function before(c: NodeClient, probeId = 'probe'): Promise<Received[]> {
  c.send(telemetry(probeId));
  const seen: Received[] = [];
  for (;;) {
    const r = await c.next();
    if (r.message.reply_to === probeId) return seen;
    seen.push(r);
  }
}

function errorsOf(frames: Received[]): Array<{ reply_to: string | undefined; code: string; field?: string }> {
  return frames.flatMap((r) => (r.message.type === 'Error' ? [{ reply_to: r.message.reply_to, code: r.message.data.code, ...(r.message.data.field === undefined ? {} : { field: r.message.data.field }) }] : []));
}

/** The bystander is still registered and answered. */
async function bystanderServed(): Promise<void> {
  expect(errorsOf(await before(bystander, `still-there-${tagCount}`))).toEqual([]);
}

describe('batch', () => {
  it('handles a bad envelope in the middle on its own id, and the ones around it as if each came alone', async () => {
    const { c, tags } = await batching();
    const submit = (n: number) => toNewJobs({ jobs: Array.from({ length: n }, () => ({ job: { command: ['true'] }, selector: { tags } })) }, p.plane.api.defaults);
    const [one, two] = await p.plane.api.submitJobs(submit(2));
    // Both assignments were decided in one pass: they come in one Batch frame.
    const first = await c.next('JobAssignment');
    const second = await c.next('JobAssignment');
    expect([first.batchSize, second.batchSize]).toEqual([2, 2]);
    expect(new Set([first.message.data.job_id, second.message.data.job_id])).toEqual(new Set([one!.job_id, two!.job_id]));

    const result = sampleMessages().JobResult;
    result.id = 'r-1';
    result.data = { ...result.data, job_id: one!.job_id, attempt: 1, node_id: c.nodeId! };
    const badHeartbeat = heartbeatMessage(c.nodeId!, 'Ready', 'bad');
    (badHeartbeat.data as { status: string }).status = 'Sleeping';
    c.send({
      type: 'Batch',
      id: 'outer',
      data: {
        messages: [
          { type: 'JobAccepted', id: 'a-1', data: { job_id: one!.job_id, attempt: 1 } },
          { type: 'LogChunk', id: 'l-1', data: { job_id: one!.job_id, attempt: 1, stream: 'stdout', seq: 0, data: 'batched output\n' } },
          badHeartbeat,
          { type: 'JobAccepted', id: 'a-2', data: { job_id: two!.job_id, attempt: 1 } },
          result,
        ],
      },
    });
    // The bad one is answered on its own id, before the result (stored later) is acknowledged on its own.
    const error = await c.next('Error');
    expect(error.message).toMatchObject({ reply_to: 'bad', data: { code: 'invalid_message', fatal: false, field: 'data.status' } });
    const ack = await c.next('JobResultAck');
    expect(ack.message).toMatchObject({ reply_to: 'r-1', data: { job_id: one!.job_id, attempt: 1 } });
    expect((await p.plane.api.getJob(one!.job_id))?.state).toBe('Completed');
    expect((await p.plane.api.getJob(two!.job_id))?.state).toBe('Running');
    expect((await p.plane.api.jobLogs(one!.job_id))?.map((l) => l.data)).toEqual(['batched output\n']);

    // A single assignment comes alone, not in a Batch of one.
    const [three] = await p.plane.api.submitJobs(submit(1));
    const alone = await c.next('JobAssignment');
    expect(alone.message.data.job_id).toBe(three!.job_id);
    expect(alone.batchSize).toBeUndefined();
    await bystanderServed();
  });

  it('holds each envelope to its own type’s size and items, answering its id', async () => {
    const { c } = await batching();
    const heartbeat = (id: string, pad: unknown) => ({ ...heartbeatMessage(c.nodeId!, 'Ready', id), pad });
    c.send({ type: 'Batch', id: 'outer', data: { messages: [heartbeat('many', Array(300).fill(0)), heartbeat('long', 'x'.repeat(5000)), heartbeat('fine', 1), telemetry('t-1')] } });
    const errors = errorsOf(await before(c));
    expect(errors).toEqual([
      { reply_to: 'many', code: 'invalid_message', field: 'data' },
      { reply_to: 'long', code: 'invalid_message', field: 'data' },
      { reply_to: 't-1', code: 'unknown_type' },
    ]);
  });

  it.each([
    ['a Batch inside it', [telemetry('t-1'), { type: 'Batch', id: 'inner', data: { messages: [telemetry('t-2')] } }], 'data.messages.1'],
    ['no envelope', [], 'data.messages'],
    [`more than ${BATCH_MAX} envelopes`, Array.from({ length: BATCH_MAX + 1 }, (_, i) => telemetry(`t-${i}`)), 'data.messages'],
  ])('refuses a Batch with %s: invalid_message on the outer id, none of it handled', async (_name, messages, field) => {
    const { c } = await batching();
    c.send({ type: 'Batch', id: 'outer', data: { messages } });
    expect(errorsOf(await before(c))).toEqual([{ reply_to: 'outer', code: 'invalid_message', field }]);
    expect(c.isClosed).toBe(false);
    await bystanderServed();
  });

  it('stops at a fatal error about one envelope: those before are handled, none after', async () => {
    const { c } = await batching();
    c.send({ type: 'Batch', id: 'outer', data: { messages: [telemetry('t-1'), 42, telemetry('t-2')] } });
    expect((await c.next('Error')).message).toMatchObject({ reply_to: 't-1', data: { code: 'unknown_type' } });
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'malformed_frame', fatal: true });
    await c.closedWithin();
    expect(c.unread()).toEqual([]);
    await bystanderServed();
  });

  it.each([
    ['a version 1 session', {}],
    ['a version 2 session that did not offer it', { protocolVersions: [1, 2], wireFeatures: ['deflate'] }],
  ])('refuses a Batch on %s: unknown_type on its id, not fatal, none of it handled', async (_name, o) => {
    const c = await p.client();
    const tags = { batch: `unagreed-${++tagCount}` };
    const ack = await c.register({ token: await p.registrationToken(), tags, ...o });
    expect(ack.data.wire_features ?? []).not.toContain('batch');
    c.send({ type: 'Batch', id: 'outer', data: { messages: [telemetry('t-1')] } });
    expect(errorsOf(await before(c))).toEqual([{ reply_to: 'outer', code: 'unknown_type' }]);
    // And the plane sends it no Batch: assignments of one pass come one by one.
    await p.plane.api.submitJobs(toNewJobs({ jobs: [{ job: { command: ['true'] }, selector: { tags } }, { job: { command: ['true'] }, selector: { tags } }] }, p.plane.api.defaults));
    const frames = [await c.next('JobAssignment'), await c.next('JobAssignment')];
    expect(frames.map((f) => f.batchSize)).toEqual([undefined, undefined]);
  });
});

describe('batch and the rates', () => {
  let limited: SecurityPlane;
  beforeAll(async () => {
    limited = await startSecurityPlane({ nodeMessageRate: 1, nodeMessageBurst: 5, banAfterViolations: 0 });
  });
  afterAll(async () => limited?.stop());

  it('counts each envelope on its own: past the burst they are dropped, with one rate_limited', async () => {
    const c = await limited.client();
    await c.register({ token: await limited.plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }), protocolVersions: [1, 2], wireFeatures: ['batch'] });
    // Burst 5: the RegisterNode took one, the Batch frame (and its first envelope) one, so three more pass.
    c.send({ type: 'Batch', id: 'outer', data: { messages: Array.from({ length: 10 }, (_, i) => telemetry(`t-${i}`)) } });
    const frames: Received[] = [];
    for (let i = 0; i < 5; i++) frames.push(await c.next());
    expect(errorsOf(frames)).toEqual([
      { reply_to: 't-0', code: 'unknown_type' },
      { reply_to: 't-1', code: 'unknown_type' },
      { reply_to: 't-2', code: 'unknown_type' },
      { reply_to: 't-3', code: 'unknown_type' },
      { reply_to: undefined, code: 'rate_limited' },
    ]);
  });
});
