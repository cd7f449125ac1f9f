// OpenTelemetry over NATS between two replicas on a real nats-server, with this process tracing
// to an OTLP receiver: a bus event published inside a span gets a producer span and is handled
// in a consumer span under it; a node command likewise, with the owner's handler in its span;
// the messaging conventions' attributes name NATS. Outside any span nothing is recorded and
// the header says so (not sampled).
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { inSpan, traceparentOf } from '../../../observability/spans.js';
import { startTracing, type Tracing } from '../../../observability/tracing.js';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import { NatsBus } from '../../../supervisor/cluster/nats-bus.js';
import { NodeCommandClient, NodeCommandServer, type NodeCommandContext } from '../../../supervisor/cluster/node-commands.js';
import { isTraceparent } from '../../../supervisor/cluster/traceparent.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { OtlpReceiver, type ReceivedSpan } from '../../observability/otlp-receiver.js';

const logger = createLogger({ level: 'silent' });
const JOB = '20000000-0000-4000-8000-000000000002';
const NODE = '10000000-0000-4000-8000-000000000001';

let server: NatsServer;
let receiver: OtlpReceiver;
let tracing: Tracing | undefined;
beforeAll(async () => {
  server = await NatsServer.start();
  receiver = await OtlpReceiver.start();
  tracing = await startTracing('replica', { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
});
afterAll(async () => {
  await tracing?.shutdown();
  await receiver.close();
  await server.stop();
});

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function natsConnect(): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  cleanups.push(() => nc.close());
  return nc;
}

async function bus(): Promise<NatsBus> {
  const b = await NatsBus.start({ nc: await natsConnect(), logger });
  cleanups.push(() => b.close());
  return b;
}

/** Each received span once `names` have all arrived (the exporter sends its batch on a force flush). */
async function exported(...names: string[]): Promise<ReceivedSpan[]> {
  await tracing!.flush();
  for (const name of names) await receiver.waitFor((s) => s.name === name);
  return receiver.spans;
}

describe('NATS messages in a trace', () => {
  it('a bus event: published in a producer span, handled on the other replica in a consumer span under it', async () => {
    const [a, b] = [await bus(), await bus()];
    const heard = new Promise<{ event: BusEvent; header: string | undefined; active: string | undefined }>((resolve) =>
      b.subscribe((event, header) => resolve({ event, header, active: traceparentOf() })),
    );
    const event: BusEvent = { kind: 'job', job_id: JOB, state: 'Queued', attempt: 1 };
    const outer = inSpan('submit', {}, undefined, () => {
      a.publish(event);
      return traceparentOf()!;
    });
    const got = await heard;
    expect(got.event).toEqual(event);
    const spans = await exported('send muster.evt.job', 'process muster.evt.job');
    const send = spans.find((s) => s.name === 'send muster.evt.job')!;
    const process_ = spans.filter((s) => s.name === 'process muster.evt.job' && s.parentSpanId === send.spanId);
    // Both replicas hear it (a publisher hears its own events too); each handles it in its own span.
    expect(process_.length).toBeGreaterThanOrEqual(1);
    expect(send.parentSpanId).toBe(outer.slice(36, 52));
    expect(send.kind).toBe(4); // PRODUCER
    expect(process_[0]!.kind).toBe(5); // CONSUMER
    expect(send.attributes).toMatchObject({
      'messaging.system': 'nats',
      'messaging.operation.type': 'send',
      'messaging.destination.name': `muster.evt.job.${JOB}`,
    });
    expect(process_[0]!.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.operation.type': 'process' });
    // The handler runs in the consumer span, and is told of it.
    expect(got.header).toBe(got.active);
    expect(process_.map((s) => s.spanId)).toContain(got.active!.slice(36, 52));
  });

  it('a node command: sent in a producer span, handled by the owner in a consumer span under it', async () => {
    let context: NodeCommandContext | undefined;
    let active: string | undefined;
    const ok = (_c: unknown, ctx: NodeCommandContext) => {
      context = ctx;
      active = traceparentOf();
      return { status: 'ok' as const };
    };
    const owner = await NodeCommandServer.start({ nc: await natsConnect(), replicaId: 'replica-b', handler: { assign: ok, cancel: ok, drain: ok, undrain: ok, release: ok }, logger });
    cleanups.push(() => owner.close());
    const client = new NodeCommandClient({ nc: await natsConnect(), replicaId: 'replica-a', timeoutMs: 2_000 });
    await inSpan('drain request', {}, undefined, () => client.send('replica-b', { kind: 'drain', node_id: NODE }));
    const spans = await exported('send muster.cmd', 'process muster.cmd');
    const outer = spans.find((s) => s.name === 'drain request')!;
    const send = spans.find((s) => s.name === 'send muster.cmd')!;
    const handled = spans.find((s) => s.name === 'process muster.cmd')!;
    expect(send.parentSpanId).toBe(outer.spanId);
    expect(handled.parentSpanId).toBe(send.spanId);
    expect(handled.traceId).toBe(outer.traceId);
    expect(send.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.destination.name': 'muster.cmd.replica-b' });
    expect(context?.traceparent).toBe(active);
    expect(active?.slice(36, 52)).toBe(handled.spanId);
  });

  it('outside any span: no span, and a fresh header marked not sampled', async () => {
    const [a, b] = [await bus(), await bus()];
    const heard = new Promise<string | undefined>((resolve) => b.subscribe((_e, header) => resolve(header)));
    const before = receiver.spans.length;
    a.publish({ kind: 'node', node_id: NODE, state: 'ready', owner: 'replica-a' });
    const header = await heard;
    expect(isTraceparent(header)).toBe(true);
    expect(header?.endsWith('-00')).toBe(true);
    await tracing!.flush();
    expect(receiver.spans.slice(before).filter((s) => s.name.includes('muster.evt.node'))).toEqual([]);
  });
});
