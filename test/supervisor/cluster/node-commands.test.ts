// The node command channel between two replicas on one real nats-server: a command reaches the
// owner and its answer comes back; an owner that does not listen is reported at once, one that
// hangs after the timeout; bad requests and failing handlers get an error reply, not a crash.
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NatsStatusTracker } from '../../../supervisor/cluster/nats-status.js';
import {
  NodeCommandClient,
  NodeCommandServer,
  type NodeCommand,
  type NodeCommandContext,
  type NodeCommandHandler,
  type NodeCommandReply,
} from '../../../supervisor/cluster/node-commands.js';
import { isTraceparent } from '../../../supervisor/cluster/traceparent.js';
import { MusterError } from '../../../protocol/errors.js';
import { createLogger } from '../../../observability/logger.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { entered } from './status-waits.js';

const logger = createLogger({ level: 'silent' });
const NODE = '10000000-0000-4000-8000-000000000001';
const JOB = '20000000-0000-4000-8000-000000000002';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let server: NatsServer;
beforeAll(async () => {
  server = await NatsServer.start();
});
afterAll(async () => {
  await server.stop();
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function natsConnect(url = server.url): Promise<NatsConnection> {
  const nc = await connect({ servers: url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  cleanups.push(() => nc.close());
  return nc;
}

/** A handler that records what it was asked and answers with `reply` (or as `answer` says). */
function recordingHandler(answer: (c: NodeCommand) => Promise<NodeCommandReply> | NodeCommandReply = () => ({ status: 'ok' })) {
  const heard: [NodeCommand, NodeCommandContext][] = [];
  const on = (c: NodeCommand, ctx: NodeCommandContext): Promise<NodeCommandReply> | NodeCommandReply => {
    heard.push([c, ctx]);
    return answer(c);
  };
  const handler: NodeCommandHandler = { assign: on, cancel: on, drain: on, undrain: on, release: on };
  return { heard, handler };
}

async function owner(replicaId: string, handler: NodeCommandHandler): Promise<NodeCommandServer> {
  const nc = await natsConnect();
  const s = await NodeCommandServer.start({ nc, replicaId, handler, logger });
  cleanups.push(() => s.close());
  return s;
}

async function sender(timeoutMs = 2_000): Promise<NodeCommandClient> {
  return new NodeCommandClient({ nc: await natsConnect(), replicaId: 'replica-a', timeoutMs });
}

describe('node commands', () => {
  it('reach the owner, with the sender and the trace, and bring its answer back', async () => {
    const { heard, handler } = recordingHandler((c) => (c.kind === 'undrain' ? { status: 'not_owner', reason: 'moved to replica-c' } : { status: 'ok' }));
    // The default replica id has a hostname's dots: it must still be one subject of its own.
    await owner('runner.example.com-1a2b3c4d', handler);
    const client = await sender();
    const commands: NodeCommand[] = [
      { kind: 'assign', node_id: NODE, job_id: JOB, attempt: 1 },
      { kind: 'cancel', job_id: JOB, attempt: 1, reason: 'cancelled by alice' },
      { kind: 'drain', node_id: NODE },
      { kind: 'undrain', node_id: NODE },
      { kind: 'release', node_id: NODE, to_replica: 'replica-a' },
    ];
    const replies = [];
    for (const c of commands) replies.push(await client.send('runner.example.com-1a2b3c4d', c, TRACEPARENT));
    expect(replies).toEqual([{ status: 'ok' }, { status: 'ok' }, { status: 'ok' }, { status: 'not_owner', reason: 'moved to replica-c' }, { status: 'ok' }]);
    expect(heard.map(([c]) => c)).toEqual(commands);
    expect(heard.map(([, ctx]) => ctx)).toEqual(commands.map(() => ({ from: 'replica-a', traceparent: TRACEPARENT })));
  });

  it('go only to the owner: one replica never hears another\'s commands', async () => {
    const b = recordingHandler();
    const c = recordingHandler();
    await owner('replica-b', b.handler);
    await owner('replica-c', c.handler);
    const client = await sender();
    await client.send('replica-c', { kind: 'drain', node_id: NODE });
    expect([b.heard.length, c.heard.length]).toEqual([0, 1]);
  });

  it('carry a fresh traceparent when the sender gives none, and the answer one in the same trace', async () => {
    const { heard, handler } = recordingHandler();
    await owner('replica-b', handler);
    await (await sender()).send('replica-b', { kind: 'drain', node_id: NODE });
    expect(isTraceparent(heard[0]![1].traceparent)).toBe(true);
    // Read the reply's own header with a raw request.
    const raw = await natsConnect();
    const h = headers();
    h.set('traceparent', TRACEPARENT);
    const msg = await raw.request('muster.cmd.replica-b', JSON.stringify({ from: 'raw', command: { kind: 'drain', node_id: NODE } }), { timeout: 2_000, headers: h });
    const answer = msg.headers?.get('traceparent') ?? '';
    expect(isTraceparent(answer)).toBe(true);
    expect(answer.slice(0, 36)).toBe(TRACEPARENT.slice(0, 36));
    expect(answer).not.toBe(TRACEPARENT);
  });

  it('fail at once, naming the owner, when no replica listens on its subject', async () => {
    const client = await sender(20_000);
    const started = performance.now();
    const err = await client.send('replica-gone', { kind: 'drain', node_id: NODE }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MusterError);
    expect(err).toMatchObject({ code: 'internal', message: expect.stringMatching(/^owner replica replica-gone is not listening for commands \(no responders on muster\.cmd\.replica-gone\)/) });
    // "At once": far from the 20 s timeout (the message above already proves it was not a timeout).
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('fail after the timeout when the owner hangs', async () => {
    await owner('replica-b', recordingHandler(() => new Promise<NodeCommandReply>(() => {})).handler);
    const err = await (await sender(200)).send('replica-b', { kind: 'cancel', job_id: JOB, attempt: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MusterError);
    expect(err).toMatchObject({ code: 'internal', message: 'owner replica replica-b did not answer within 200 ms' });
  });

  it('fail at once once the owner stopped serving', async () => {
    const s = await owner('replica-b', recordingHandler().handler);
    const client = await sender(20_000);
    await expect(client.send('replica-b', { kind: 'drain', node_id: NODE })).resolves.toEqual({ status: 'ok' });
    await s.close();
    await expect(client.send('replica-b', { kind: 'drain', node_id: NODE })).rejects.toThrow(/no responders/);
  });

  it('answer error when the handler throws: a MusterError with its message, anything else as "internal error"', async () => {
    await owner(
      'replica-b',
      recordingHandler((c) => {
        if (c.kind === 'drain') throw new MusterError('invalid_message', 'node is not connected here');
        throw new Error('secret internals');
      }).handler,
    );
    const client = await sender();
    await expect(client.send('replica-b', { kind: 'drain', node_id: NODE })).resolves.toEqual({ status: 'error', reason: 'node is not connected here' });
    await expect(client.send('replica-b', { kind: 'undrain', node_id: NODE })).resolves.toEqual({ status: 'error', reason: 'internal error' });
  });

  it('answer error to what is not a command, and go on serving', async () => {
    const { heard, handler } = recordingHandler();
    await owner('replica-b', handler);
    const raw = await natsConnect();
    for (const junk of ['nope', '{}', JSON.stringify({ from: 'x', command: { kind: 'explode', node_id: NODE } }), JSON.stringify({ from: 'x', command: { kind: 'assign', node_id: NODE, job_id: JOB, attempt: 0 } }), 'x'.repeat(10_000)]) {
      const msg = await raw.request('muster.cmd.replica-b', junk, { timeout: 2_000 });
      expect(msg.json()).toMatchObject({ status: 'error', reason: expect.stringMatching(/^not a node command/) });
    }
    expect(heard).toEqual([]);
    await expect((await sender()).send('replica-b', { kind: 'drain', node_id: NODE })).resolves.toEqual({ status: 'ok' });
  });

  it('fail at once while the sender itself is cut off from NATS', async () => {
    const local = await NatsServer.start();
    cleanups.push(() => local.stop());
    const nc = await natsConnect(local.url);
    const status = new NatsStatusTracker(nc);
    cleanups.push(() => status.stop());
    const client = new NodeCommandClient({ nc, replicaId: 'replica-a', timeoutMs: 20_000, status });
    const away = entered(status, 'reconnecting');
    await local.kill9();
    await away;
    await expect(client.send('replica-b', { kind: 'drain', node_id: NODE })).rejects.toThrow('cannot reach owner replica replica-b: this replica is not connected to NATS');
  });
});
