// The live feed `GET /v1/events` over real HTTP connections, against a fake plane whose bus the
// test drives and whose flushes it calls (no timer): the snapshot first; deltas coalesced to
// the latest state per node with a rising id; a resume with `Last-Event-ID` from the ring or,
// when that is gone, a fresh snapshot; a reader that stops reading dropped to a fresh snapshot
// rather than buffered for; and the cost of a flush: one changed node among 10,000 is one
// node read and sent.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readSse, type SseEvent } from '../../../cli/sse-reader.js';
import { createLogger } from '../../../observability/logger.js';
import type { NodeState } from '../../../actors/node-machine.js';
import type { Priority } from '../../../protocol/messages.js';
import { startAdminApi, type AdminApi } from '../../../supervisor/admin/api-server.js';
import type { FleetDelta, FleetEvents, FleetSnapshot } from '../../../supervisor/admin/fleet-events.js';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import { LocalBus } from '../../../supervisor/bus/local-bus.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { FakePlaneApi } from './fake-plane-api.js';
import { startSecurityPlane } from '../security-plane.js';

const tokens = new TokenAuthority(randomBytes(32));
const logger = createLogger({ level: 'silent' });
const WAIT_MS = 10_000;

/** A fake plane with a fleet: node views in a map, and a bus the test publishes on. */
class FleetPlane extends FakePlaneApi {
  readonly bus = new LocalBus();
  readonly views = new Map<string, NodeView>();
  queue: Record<Priority, number> = { Critical: 0, High: 0, Normal: 0, Low: 0 };

  override listNodes(): NodeView[] {
    return [...this.views.values()];
  }
  nodeView(nodeId: string): NodeView | undefined {
    return this.views.get(nodeId);
  }
  async queueCounts(): Promise<Record<Priority, number>> {
    return { ...this.queue };
  }
  watchFleet(handler: (event: BusEvent) => void): () => void {
    return this.bus.subscribe(handler);
  }

  /** Node `id` is now in `state`, as its session would publish it. */
  setState(id: string, state: NodeState): void {
    const view = this.views.get(id) ?? nodeView(id);
    this.views.set(id, { ...view, state });
    this.bus.publish({ kind: 'node', node_id: id, state, owner: view.owner });
  }
}

function nodeView(id: string, state: NodeState = 'ready'): NodeView {
  return {
    node_id: id,
    hostname: `host-${id}`,
    state,
    connected: true,
    owner: 'replica-a',
    running_jobs: [],
    last_heartbeat: new Date(0).toISOString(),
    tags: { pool: 'linux' },
    transport: 'tcp',
    protocol_version: 1,
  };
}

let plane: FleetPlane;
let server: AdminApi;
/** The server the current test started, closed after it. */
let running: AdminApi | undefined;
let feed: FleetEvents;
let viewer: string;
const open: Array<{ close(): void }> = [];

beforeAll(async () => {
  viewer = await tokens.mintApiToken({ role: 'viewer', ttlSeconds: 600 });
});

async function start(clientBufferBytes?: number): Promise<void> {
  plane = new FleetPlane();
  for (let i = 0; i < 3; i++) plane.views.set(`n${i}`, nodeView(`n${i}`));
  server = await startAdminApi({
    host: '127.0.0.1',
    port: 0,
    api: plane,
    tokens,
    logger,
    fleetEvents: { timers: false, ...(clientBufferBytes === undefined ? {} : { clientBufferBytes }) },
  });
  running = server;
  feed = server.events!;
}

afterEach(async () => {
  for (const o of open.splice(0)) o.close();
  await running?.close();
  running = undefined;
});


/** Opens the feed; its events one by one, each within WAIT_MS. */
async function subscribe(headers: Record<string, string> = { authorization: `Bearer ${viewer}` }) {
  const controller = new AbortController();
  const res = await fetch(`${server.url}/v1/events`, { headers, signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events = readSse(res.body as ReadableStream<Uint8Array>);
  open.push({ close: () => controller.abort() });
  return {
    async next(): Promise<SseEvent> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no event within ${WAIT_MS} ms`)), WAIT_MS);
      });
      try {
        const next = await Promise.race([events.next(), timeout]);
        if (next.done === true) throw new Error('the feed ended');
        return next.value;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function snapshotOf(event: SseEvent): FleetSnapshot {
  expect(event.event).toBe('snapshot');
  return JSON.parse(event.data) as FleetSnapshot;
}

function deltaOf(event: SseEvent): FleetDelta {
  expect(event.event).toBe('delta');
  return JSON.parse(event.data) as FleetDelta;
}

describe('GET /v1/events', () => {
  it('needs a viewer token, in the Authorization header or the muster_token cookie, not in the query', async () => {
    await start();
    expect((await fetch(`${server.url}/v1/events`)).status).toBe(401);
    expect((await fetch(`${server.url}/v1/events?token=${viewer}`)).status).toBe(401);
    expect((await fetch(`${server.url}/v1/events`, { headers: { cookie: 'muster_token=not-a-jwt' } })).status).toBe(401);
    const byCookie = await subscribe({ cookie: `other=1; muster_token=${viewer}` });
    expect(snapshotOf(await byCookie.next()).nodes).toHaveLength(3);
    // The cookie is for the feed alone: the other read APIs still want the header.
    expect((await fetch(`${server.url}/v1/nodes`, { headers: { cookie: `muster_token=${viewer}` } })).status).toBe(401);
  });

  it('sends a snapshot, then the latest state of each changed node once per flush, with rising ids', async () => {
    await start();
    const client = await subscribe();
    const first = await client.next();
    const snapshot = snapshotOf(first);
    expect(first.id).toBe(String(snapshot.seq));
    expect(snapshot.nodes.map((n) => [n.node_id, n.state, n.owner])).toEqual([
      ['n0', 'ready', 'replica-a'],
      ['n1', 'ready', 'replica-a'],
      ['n2', 'ready', 'replica-a'],
    ]);
    // n1 flaps five times between flushes: one entry, its last state.
    for (const state of ['busy', 'ready', 'busy', 'ready', 'draining'] as const) plane.setState('n1', state);
    plane.setState('n2', 'busy');
    feed.flush();
    const event = await client.next();
    const delta = deltaOf(event);
    expect(event.id).toBe(String(snapshot.seq + 1));
    expect(delta.seq).toBe(snapshot.seq + 1);
    expect(delta.nodes.map((n) => [n.node_id, n.state])).toEqual([
      ['n1', 'draining'],
      ['n2', 'busy'],
    ]);
    // Nothing changed: no delta. A forgotten node is `removed`; a job names its node too.
    feed.flush();
    plane.views.delete('n0');
    plane.bus.publish({ kind: 'node', node_id: 'n0', state: 'dead', owner: 'replica-a' });
    plane.bus.publish({ kind: 'job', job_id: 'j1', state: 'Assigned', attempt: 1, node_id: 'n2' });
    feed.flush();
    const next = deltaOf(await client.next());
    expect(next.seq).toBe(snapshot.seq + 2);
    expect(next.removed).toEqual(['n0']);
    expect(next.nodes.map((n) => n.node_id)).toEqual(['n2']);
    expect(next.jobs).toEqual([{ job_id: 'j1', state: 'Assigned', attempt: 1, node_id: 'n2' }]);
  });

  it('resumes from Last-Event-ID with the deltas missed, and sends a snapshot when they are gone', async () => {
    await start();
    // One client stays, so the ring is kept.
    const stays = await subscribe();
    const seq = snapshotOf(await stays.next()).seq;
    plane.setState('n0', 'busy');
    feed.flush();
    plane.setState('n1', 'busy');
    feed.flush();
    const resumed = await subscribe({ authorization: `Bearer ${viewer}`, 'last-event-id': String(seq) });
    const replayed = [deltaOf(await resumed.next()), deltaOf(await resumed.next())];
    expect(replayed.map((d) => [d.seq, d.nodes.map((n) => n.node_id)])).toEqual([
      [seq + 1, ['n0']],
      [seq + 2, ['n1']],
    ]);
    expect(feed.counters.replays).toBe(1);
    // Up to date: nothing replayed; the next delta is the next thing it gets.
    const upToDate = await subscribe({ authorization: `Bearer ${viewer}`, 'last-event-id': String(seq + 2) });
    plane.setState('n2', 'busy');
    feed.flush();
    expect(deltaOf(await upToDate.next()).seq).toBe(seq + 3);
    // From before the ring (an earlier process, or too long ago), or not a number: a snapshot.
    for (const id of [String(seq - 5), String(seq + 99), 'garbage']) {
      const late = await subscribe({ authorization: `Bearer ${viewer}`, 'last-event-id': id });
      const snapshot = snapshotOf(await late.next());
      expect(snapshot.seq).toBe(seq + 3);
      expect(snapshot.nodes.map((n) => n.state)).toEqual(['busy', 'busy', 'busy']);
    }
  });

  it('keeps no history while no one listens: a resume after that gets a snapshot', async () => {
    await start();
    // The feed forgets a client when its response closes: the test hears the same event.
    const responses: ServerResponse[] = [];
    const openFeed = feed.open.bind(feed);
    feed.open = (res, lastEventId) => {
      responses.push(res);
      openFeed(res, lastEventId);
    };
    const client = await subscribe();
    const seq = snapshotOf(await client.next()).seq;
    for (const o of open.splice(0)) o.close();
    await Promise.all(responses.map((res) => (res.closed ? undefined : once(res, 'close'))));
    expect(feed.clients).toBe(0);
    plane.setState('n0', 'busy');
    feed.flush();
    const back = await subscribe({ authorization: `Bearer ${viewer}`, 'last-event-id': String(seq) });
    expect(snapshotOf(await back.next()).nodes.find((n) => n.node_id === 'n0')?.state).toBe('busy');
  });

  it('reads and sends one node in a flush where one of 10,000 changed', async () => {
    await start();
    for (let i = 0; i < 10_000; i++) plane.views.set(`big-${i}`, nodeView(`big-${i}`));
    const client = await subscribe();
    expect(snapshotOf(await client.next()).nodes).toHaveLength(10_003);
    const before = feed.counters.nodesSerialised;
    // A node flapping every 100 ms between two 200 ms flushes: two changes, one node sent.
    plane.setState('big-4321', 'busy');
    plane.setState('big-4321', 'ready');
    plane.setState('big-4321', 'busy');
    feed.flush();
    const delta = deltaOf(await client.next());
    expect(feed.counters.nodesSerialised - before).toBe(1);
    expect(delta.nodes.map((n) => [n.node_id, n.state])).toEqual([['big-4321', 'busy']]);
  });

  it('drops a client that stops reading to a fresh snapshot, instead of buffering for it', async () => {
    const capBytes = 64 * 1024;
    await start(capBytes);
    for (let i = 0; i < 5_000; i++) plane.views.set(`slow-${i}`, nodeView(`slow-${i}`));
    const slow = await RawReader.open(server.url, viewer);
    await slow.until((text) => text.includes('event: snapshot'));
    slow.pause();
    // Every node changes before every flush: each delta is ~1 MB, far over the cap.
    let flushes = 0;
    while (feed.counters.dropped === 0) {
      if (++flushes > 200) throw new Error('never dropped the slow client');
      for (let i = 0; i < 5_000; i++) plane.setState(`slow-${i}`, flushes % 2 === 0 ? 'ready' : 'busy');
      feed.flush();
      // Lets the socket write what the kernel takes.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // More deltas while it lags are not buffered for it.
    for (let k = 0; k < 5; k++) {
      plane.setState('slow-0', k % 2 === 0 ? 'draining' : 'ready');
      feed.flush();
    }
    const flushedDeltas = feed.counters.deltas;
    slow.resume();
    // The second snapshot, whole (an event ends with a blank line).
    await slow.until((text) => text.split('event: snapshot').length === 3 && text.endsWith('\n\n'));
    const received = slow.text.split('event: delta').length - 1;
    expect(received).toBeLessThan(flushedDeltas);
    expect(feed.counters.dropped).toBe(1);
    // The fresh snapshot has the latest state.
    const last = slow.text.slice(slow.text.lastIndexOf('event: snapshot'));
    const data = /data: (.*)\n/.exec(last)?.[1];
    expect(data).toBeDefined();
    const snapshot = JSON.parse(data!) as FleetSnapshot;
    expect(snapshot.nodes.find((n) => n.node_id === 'slow-0')?.state).toBe(plane.views.get('slow-0')?.state);
    expect(plane.views.get('slow-0')?.state).toBe('draining');
  }, 60_000);
});

/** A raw HTTP/1.1 reader of the feed whose reading the test can pause (the kernel then stops taking bytes). */
class RawReader {
  /** The body so far, its chunked framing taken off. */
  text = '';
  #raw = '';
  #headersDone = false;
  #waiters: Array<{ check: (text: string) => boolean; resolve: () => void }> = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.#raw += chunk;
      this.dechunk();
      this.#waiters = this.#waiters.filter((w) => (w.check(this.text) ? (w.resolve(), false) : true));
    });
    open.push({ close: () => socket.destroy() });
  }

  static async open(base: string, token: string): Promise<RawReader> {
    const url = new URL(base);
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.write(`GET /v1/events HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${token}\r\n\r\n`);
    return new RawReader(socket);
  }

  /** Moves whole chunks of `#raw` (after the headers) into `text`. */
  private dechunk(): void {
    if (!this.#headersDone) {
      const end = this.#raw.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.#raw = this.#raw.slice(end + 4);
      this.#headersDone = true;
    }
    for (;;) {
      const line = this.#raw.indexOf('\r\n');
      if (line < 0) return;
      const size = parseInt(this.#raw.slice(0, line), 16);
      if (this.#raw.length < line + 2 + size + 2) return;
      this.text += Buffer.from(this.#raw.slice(line + 2, line + 2 + size), 'latin1').toString('utf8');
      this.#raw = this.#raw.slice(line + 2 + size + 2);
    }
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  until(check: (text: string) => boolean): Promise<void> {
    if (check(this.text)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not seen within ${WAIT_MS * 3} ms`)), WAIT_MS * 3);
      this.#waiters.push({ check, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }
}

describe('GET /v1/events on a real plane', () => {
  it('counts a wrong token in the cookie as a failed authentication, as one in the header', async () => {
    const p = await startSecurityPlane({ failedAuthPerMinute: 3 });
    try {
      const viewerToken = await p.apiToken('viewer');
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${p.plane.httpUrl}/v1/events`, { headers: { cookie: `muster_token=guess-${i}` } });
        expect(res.status).toBe(401);
      }
      // The address is over its budget: refused whatever the token.
      expect((await p.http('GET', '/v1/nodes', viewerToken)).status).toBe(429);
    } finally {
      await p.stop();
    }
  });
});
