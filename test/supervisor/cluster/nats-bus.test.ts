// NatsBus against a real nats-server: the Bus contract, then what only a bus between replicas
// has: two replicas (two connections) hear each other, the traceparent header is on the wire,
// bad input on the subject is dropped without harm, and events outlive a server restart.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import { NatsBus, type NatsBusOptions } from '../../../supervisor/cluster/nats-bus.js';
import { NatsStatusTracker } from '../../../supervisor/cluster/nats-status.js';
import { isTraceparent } from '../../../supervisor/cluster/traceparent.js';
import { createLogger } from '../../../observability/logger.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { entered } from './status-waits.js';
import { busContract, jobEvent, Recorder, testId, TRACEPARENT } from '../bus/bus-contract.js';

const logger = createLogger({ level: 'silent' });

let server: NatsServer;
beforeAll(async () => {
  server = await NatsServer.start();
});
afterAll(async () => {
  await server.stop();
});

function natsConnect(url = server.url, name = 'test'): Promise<NatsConnection> {
  return connect({ servers: url, name, maxReconnectAttempts: -1, reconnectTimeWait: 50, reconnectJitter: 20 });
}

busContract('NatsBus', async (onHandlerError) => {
  const nc = await natsConnect();
  const bus = await NatsBus.start({ nc, logger, onHandlerError });
  return {
    bus,
    // One connection: once the server answered a ping, it has delivered every earlier message back to it.
    settle: () => nc.flush(),
    close: async () => {
      await bus.close();
      await nc.close();
    },
  };
});

describe('NatsBus between replicas', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function replica(options: Partial<NatsBusOptions> = {}, url = server.url): Promise<{ nc: NatsConnection; bus: NatsBus; status: NatsStatusTracker }> {
    const nc = await natsConnect(url);
    const status = new NatsStatusTracker(nc);
    const bus = await NatsBus.start({ nc, logger, status, ...options });
    cleanups.push(async () => {
      await bus.close();
      status.stop();
      await nc.close();
    });
    return { nc, bus, status };
  }

  it('two replicas on two connections hear each other, and themselves, in each publisher order', async () => {
    const a = await replica();
    const b = await replica();
    const [heardByA, heardByB] = [new Recorder(), new Recorder()];
    a.bus.subscribe(heardByA.handler);
    b.bus.subscribe(heardByB.handler);
    const fromA = Array.from({ length: 50 }, (_, i) => jobEvent(i));
    const fromB: BusEvent[] = Array.from({ length: 50 }, (_, i) => ({ kind: 'node', node_id: testId(i, '10000000'), state: 'busy', owner: 'replica-b' }));
    for (let i = 0; i < 50; i++) {
      a.bus.publish(fromA[i]!);
      b.bus.publish(fromB[i]!);
    }
    for (const r of [heardByA, heardByB]) {
      const events = await r.waitFor(100);
      expect(events.filter((e) => e.kind === 'job')).toEqual(fromA);
      expect(events.filter((e) => e.kind === 'node')).toEqual(fromB);
    }
  });

  it("a closed bus hears nothing more from other replicas", async () => {
    const a = await replica();
    const b = await replica();
    const r = new Recorder();
    a.bus.subscribe(r.handler);
    b.bus.publish(jobEvent(1));
    await r.waitFor(1);
    await a.bus.close();
    // B's event, then a marker on A's own connection: once A hears the marker, it would have heard the event.
    const marker = a.nc.subscribe('test.marker', { max: 1 });
    await a.nc.flush();
    b.bus.publish(jobEvent(2));
    b.nc.publish('test.marker', '');
    for await (const _ of marker) break;
    expect(r.events).toEqual([jobEvent(1)]);
  });

  it('puts a valid traceparent header on every message: the given one, else a fresh one', async () => {
    const a = await replica();
    const raw = await natsConnect();
    cleanups.push(() => raw.close());
    const headers: string[] = [];
    const subjects: string[] = [];
    const sub = raw.subscribe('muster.evt.>', { max: 2 });
    await raw.flush();
    a.bus.publish(jobEvent(1), TRACEPARENT);
    a.bus.publish({ kind: 'log', job_id: testId(2), attempt: 1 });
    for await (const msg of sub) {
      headers.push(msg.headers?.get('traceparent') ?? '');
      subjects.push(msg.subject);
      expect(JSON.parse(msg.string())).toMatchObject({ attempt: 1 });
    }
    expect(subjects).toEqual([`muster.evt.job.${testId(1)}`, `muster.evt.log.${testId(2)}`]);
    expect(headers[0]).toBe(TRACEPARENT);
    expect(isTraceparent(headers[1])).toBe(true);
    expect(headers[1]).not.toBe(TRACEPARENT);
  });

  it('drops what is not an event (junk, wrong fields, ids not matching the subject, oversized) and keeps going', async () => {
    const a = await replica();
    const r = new Recorder();
    a.bus.subscribe(r.handler);
    const id = testId(1);
    const junk: [string, Uint8Array | string][] = [
      [`muster.evt.job.${id}`, 'not json'],
      [`muster.evt.job.${id}`, new Uint8Array([0xff, 0xfe, 0x00])],
      [`muster.evt.job.${id}`, JSON.stringify({ kind: 'job', job_id: id, state: 'Exploded', attempt: 1 })],
      [`muster.evt.job.${id}`, JSON.stringify({ kind: 'job', job_id: id, state: 'Queued', attempt: -1 })],
      [`muster.evt.job.${id}`, JSON.stringify({ kind: 'job', job_id: 'another', state: 'Queued', attempt: 1 })],
      [`muster.evt.node.${id}`, JSON.stringify({ kind: 'job', job_id: id, state: 'Queued', attempt: 1 })],
      [`muster.evt.job.${id}`, JSON.stringify({ kind: 'job', job_id: id, state: 'Queued', attempt: 1, pad: 'x'.repeat(5_000) })],
      [`muster.evt.job.${id}`, 'null'],
      [`muster.evt.x`, '[]'],
    ];
    for (const [subject, data] of junk) a.nc.publish(subject, data);
    a.bus.publish(jobEvent(1));
    // A newer replica's extra field is left out, not refused.
    a.nc.publish(`muster.evt.job.${id}`, JSON.stringify({ ...jobEvent(1), attempt: 2, added_later: true }));
    expect(await r.waitFor(2)).toEqual([jobEvent(1), jobEvent(1, 2)]);
    expect(a.bus.stats()).toMatchObject({ undecodable: junk.length, heard: 2 });
  });

  it('starts while NATS is away, and hears events once it is back', async () => {
    const local = await NatsServer.start();
    cleanups.push(() => local.stop());
    const nc = await natsConnect(local.url);
    const status = new NatsStatusTracker(nc);
    const away = entered(status, 'reconnecting');
    await local.kill9();
    await away;
    const bus = await NatsBus.start({ nc, logger, status });
    cleanups.push(async () => {
      await bus.close();
      status.stop();
      await nc.close();
    });
    const r = new Recorder();
    bus.subscribe(r.handler);
    const back = entered(status, 'connected');
    const restarted = local.restart();
    cleanups.push(async () => (await restarted).stop());
    await restarted;
    await back;
    bus.publish(jobEvent(1));
    expect(await r.waitFor(1)).toEqual([jobEvent(1)]);
  });

  it('keeps events published while NATS is away (bounded, oldest dropped), and delivers across replicas after a restart', async () => {
    const local = await NatsServer.start();
    cleanups.push(() => local.stop());
    const a = await replica({ maxPendingEvents: 5 }, local.url);
    const b = await replica({}, local.url);
    const [heardByA, heardByB] = [new Recorder(), new Recorder()];
    a.bus.subscribe(heardByA.handler);
    b.bus.subscribe(heardByB.handler);

    const away = Promise.all([entered(a.status, 'reconnecting'), entered(b.status, 'reconnecting')]);
    await local.kill9();
    await away;
    for (let i = 0; i < 20; i++) a.bus.publish(jobEvent(i));
    expect(a.bus.stats()).toMatchObject({ pending: 5, dropped: 15 });

    const back = Promise.all([entered(a.status, 'connected'), entered(b.status, 'connected')]);
    cleanups.push(async () => (await restarted).stop());
    const restarted = local.restart();
    await restarted;
    await back;
    // "connected" means each client re-sent its subscription; a round trip means the server has it.
    await Promise.all([a.nc.flush(), b.nc.flush()]);
    // What waited went out in order once A was back (A's own subscription was restored before it).
    expect(await heardByA.waitFor(5)).toEqual([15, 16, 17, 18, 19].map((i) => jobEvent(i)));
    // Published after both reconnected: heard by both.
    a.bus.publish(jobEvent(100));
    b.bus.publish(jobEvent(200));
    for (const r of [heardByA, heardByB]) {
      await r.until(() => r.events.some((e) => sameJob(e, 100)) && r.events.some((e) => sameJob(e, 200)), 'both events after the restart');
    }
    expect(a.bus.stats().pending).toBe(0);
  });
});

function sameJob(event: BusEvent, n: number): boolean {
  return event.kind === 'job' && event.job_id === testId(n);
}
