// `npm run bench -- bus`: the NATS bus between two replicas (two NatsBus instances on two
// connections, in this process) through one real nats-server (another process).
//
//   latency      one event at a time: publish on replica A → heard by B's subscriber (and by A's
//                own), p50/p99 of the one-way time (one process, one clock)
//   events/s     A publishes as fast as it can (yielding every 1,000 so that the socket drains);
//                the rate at which B hears all of them, with the CPU time per event of this
//                process (both replicas: encode, publish, decode, deliver) and of nats-server
//   codec        a job event encoded and decoded in-process, JSON (what the bus uses) beside
//                msgpackr, to back the choice made in bus-event-codec.ts
import { cpus, hostname } from 'node:os';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { pack, unpack } from 'msgpackr';
import type { BusEvent } from '../../supervisor/bus/bus.js';
import { decodeBusEvent, encodeBusEvent } from '../../supervisor/cluster/bus-event-codec.js';
import { NatsBus } from '../../supervisor/cluster/nats-bus.js';
import { eventSubject } from '../../supervisor/cluster/subjects.js';
import { createLogger } from '../../observability/logger.js';
import { NatsServer } from '../cluster/nats-server.js';
import { cpuSeconds } from './proc-stats.js';
import { summarize } from './quantiles.js';

const LATENCY_SAMPLES = Number(process.env.BENCH_BUS_LATENCY ?? 2_000);
const THROUGHPUT_EVENTS = Number(process.env.BENCH_BUS_EVENTS ?? 100_000);
const CODEC_ROUNDS = 200_000;
const RUNS = 3;

const logger = createLogger({ level: 'silent' });

function event(i: number): BusEvent {
  return { kind: 'job', job_id: `6f1c1c9e-1d55-4b9e-9a0e-${String(i % 1e12).padStart(12, '0')}`, state: 'Running', attempt: 1, node_id: '10000000-0000-4000-8000-000000000001' };
}

export async function runBus(): Promise<void> {
  console.log(`machine: ${hostname()}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}`);
  console.log(`bus: ${LATENCY_SAMPLES} latency samples, ${THROUGHPUT_EVENTS} events per throughput run, ${RUNS} runs (medians)\n`);
  const server = await NatsServer.start();
  const connections: NatsConnection[] = [];
  try {
    const replica = async (name: string): Promise<NatsBus> => {
      const nc = await connect({ servers: server.url, name });
      connections.push(nc);
      return NatsBus.start({ nc, logger });
    };
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    const latencies = { remote: [] as number[], own: [] as number[] };
    const rates: number[] = [];
    const planeCpu: number[] = [];
    const serverCpu: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const l = await latency(a, b);
      latencies.remote.push(l.remote.p50, l.remote.p99);
      latencies.own.push(l.own.p50, l.own.p99);
      console.log(
        `run ${run + 1}: A→B p50 ${us(l.remote.p50)} p99 ${us(l.remote.p99)}   A→A p50 ${us(l.own.p50)} p99 ${us(l.own.p99)}`,
      );
      const t = await throughput(a, b, server.pid);
      rates.push(t.rate);
      planeCpu.push(t.planeCpuUs);
      serverCpu.push(t.serverCpuUs);
      console.log(`       ${fmt(t.rate)} events/s A→B   CPU/event: replicas ${t.planeCpuUs.toFixed(1)} µs, nats-server ${t.serverCpuUs.toFixed(1)} µs`);
    }
    const pick = (xs: number[], offset: number): number => median(xs.filter((_, i) => i % 2 === offset));
    console.log(
      `\nmedian: A→B p50 ${us(pick(latencies.remote, 0))} p99 ${us(pick(latencies.remote, 1))}   ` +
        `A→A p50 ${us(pick(latencies.own, 0))} p99 ${us(pick(latencies.own, 1))}   ` +
        `${fmt(median(rates))} events/s   CPU/event replicas ${median(planeCpu).toFixed(1)} µs, nats-server ${median(serverCpu).toFixed(1)} µs`,
    );
    codecs();
    await a.close();
    await b.close();
  } finally {
    for (const nc of connections) await nc.close();
    await server.stop();
  }
}

/** One event in flight at a time; each sample is publish → heard, in µs. */
async function latency(a: NatsBus, b: NatsBus): Promise<{ remote: ReturnType<typeof summarize>; own: ReturnType<typeof summarize> }> {
  const remote: number[] = [];
  const own: number[] = [];
  let sentAt = 0;
  let pending: (() => void) | undefined;
  let heardRemote = false;
  let heardOwn = false;
  const check = (): void => {
    if (heardRemote && heardOwn) pending?.();
  };
  const stopB = b.subscribe(() => {
    remote.push((performance.now() - sentAt) * 1000);
    heardRemote = true;
    check();
  });
  const stopA = a.subscribe(() => {
    own.push((performance.now() - sentAt) * 1000);
    heardOwn = true;
    check();
  });
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    heardRemote = false;
    heardOwn = false;
    const both = new Promise<void>((resolve) => (pending = resolve));
    sentAt = performance.now();
    a.publish(event(i));
    await both;
  }
  stopA();
  stopB();
  return { remote: summarize(remote), own: summarize(own) };
}

async function throughput(a: NatsBus, b: NatsBus, serverPid: number): Promise<{ rate: number; planeCpuUs: number; serverCpuUs: number }> {
  let heard = 0;
  let done: (() => void) | undefined;
  const all = new Promise<void>((resolve) => (done = resolve));
  const stop = b.subscribe(() => {
    if (++heard === THROUGHPUT_EVENTS) done?.();
  });
  const cpu0 = process.cpuUsage();
  const server0 = cpuSeconds(serverPid);
  const started = performance.now();
  for (let i = 0; i < THROUGHPUT_EVENTS; i++) {
    a.publish(event(i));
    if (i % 1_000 === 999) await new Promise((resolve) => setImmediate(resolve));
  }
  await all;
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const serverSeconds = cpuSeconds(serverPid) - server0;
  stop();
  return {
    rate: THROUGHPUT_EVENTS / seconds,
    // This process's CPU covers both replicas' work for each event, and A hearing its own copy.
    planeCpuUs: (cpu.user + cpu.system) / THROUGHPUT_EVENTS,
    serverCpuUs: (serverSeconds * 1e6) / THROUGHPUT_EVENTS,
  };
}

function codecs(): void {
  const e = event(42);
  const subject = eventSubject(e);
  const json = timed(() => {
    const r = decodeBusEvent(subject, encodeBusEvent(e));
    if (!('event' in r)) throw new Error('bad round trip');
  });
  const jsonRaw = timed(() => JSON.parse(Buffer.from(JSON.stringify(e)).toString('utf8')) as unknown);
  const msgpack = timed(() => {
    const back = unpack(pack(e)) as BusEvent;
    if (back.kind !== 'job') throw new Error('bad round trip');
  });
  console.log(
    `\ncodec, one job event encoded + decoded: JSON with the bus's checks ${fmt(json)}/s, JSON alone ${fmt(jsonRaw)}/s ` +
      `(${encodeBusEvent(e).length} bytes); msgpackr alone ${fmt(msgpack)}/s (${pack(e).length} bytes)`,
  );
}

function timed(fn: () => unknown): number {
  for (let i = 0; i < 10_000; i++) fn();
  const started = performance.now();
  for (let i = 0; i < CODEC_ROUNDS; i++) fn();
  return CODEC_ROUNDS / ((performance.now() - started) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

function us(x: number): string {
  return `${Math.round(x)} µs`;
}

function fmt(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}
