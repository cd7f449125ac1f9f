// The KV watch as a hint against a real nats-server: entries written while the watch was gone
// (its consumer deleted on the server, or the connection cut) still arrive, because the watch is
// re-created from the last revision seen, after a reconnect or when the stream-info check finds
// it stuck.
import { describe, expect, it } from 'vitest';
import { type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KvWatchEntry } from '@nats-io/kv';
import { natsFixture } from './nats-fixture.js';
import { KvWatchHint } from '../../../supervisor/cluster/kv-watch-hint.js';
import { TcpProxy } from './tcp-proxy.js';
import { nextEvent } from './await-event.js';

const nats = natsFixture();
const closers = nats.closers;
const natsConnection = (url?: string): Promise<NatsConnection> => nats.connection(url);
let seq = 0;

/** Entries as events, to await them. */
class Entries {
  private readonly handlers = new Set<(e: KvWatchEntry) => void>();
  readonly seen: KvWatchEntry[] = [];
  push = (entry: KvWatchEntry): void => {
    this.seen.push(entry);
    for (const h of this.handlers) h(entry);
  };
  subscribe(handler: (e: KvWatchEntry) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }
}

async function setUp(url?: string, checkMs = 200): Promise<{ hint: KvWatchHint; entries: Entries; write: (k: string) => Promise<number>; bucket: string }> {
  const bucket = `muster-hint-${++seq}`;
  const writer = await new Kvm(await natsConnection()).create(bucket, { history: 1 });
  await writer.put('before', 'x'); // written before the watch: not delivered
  const nc = await natsConnection(url);
  const kv = await new Kvm(nc).open(bucket);
  const entries = new Entries();
  const hint = await KvWatchHint.start({ nc, kv, checkMs, onEntry: entries.push, onError: () => {} });
  closers.push(() => hint.close());
  return { hint, entries, bucket, write: (k) => writer.put(k, 'v') };
}

describe('KvWatchHint', () => {
  it('delivers what is written after it started, not before', async () => {
    const { entries, write } = await setUp();
    const got = nextEvent(entries, (e) => e.key === 'a', 3_000, 'entry a');
    const revision = await write('a');
    expect((await got).revision).toBe(revision);
    expect(entries.seen.map((e) => e.key)).toEqual(['a']);
  });

  it('a watch whose consumer vanished is found stuck by the stream check and re-created', async () => {
    const { hint, entries, write, bucket } = await setUp(undefined, 200);
    const first = nextEvent(entries, (e) => e.key === 'a', 3_000, 'entry a');
    await write('a');
    await first;
    const jsm = await jetstreamManager(await natsConnection());
    for await (const consumer of jsm.consumers.list(`KV_${bucket}`)) await jsm.consumers.delete(`KV_${bucket}`, consumer.name);
    const restarts = hint.restarts;
    const got = nextEvent(entries, (e) => e.key === 'b', 5_000, 'entry b after the watch was lost');
    const revision = await write('b');
    expect((await got).revision).toBe(revision);
    expect(hint.restarts).toBeGreaterThan(restarts);
  });

  it('is re-created after a reconnect from the last revision seen', async () => {
    const proxy = await TcpProxy.start(nats.server.port);
    closers.push(() => proxy.close());
    const { hint, entries, write } = await setUp(proxy.url, 0); // no timer: only the reconnect
    const first = nextEvent(entries, (e) => e.key === 'a', 3_000, 'entry a');
    await write('a');
    await first;
    proxy.cut();
    const missed = await write('b');
    const got = nextEvent(entries, (e) => e.key === 'b', 5_000, 'entry b after the reconnect');
    proxy.heal();
    expect((await got).revision).toBe(missed);
    expect(hint.revision).toBeGreaterThanOrEqual(missed);
  });
});
