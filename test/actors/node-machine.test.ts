// The node actor decides a node's state from messages and timers alone: these tests drive
// it with events and fake timers, and watch the named actions it asks the supervisor for.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createActor } from 'xstate';
import { nodeMachine, type NodePort, type Registration } from '../../actors/node-machine.js';
import { MusterError } from '../../protocol/errors.js';
import type { EnvelopeOf } from '../../protocol/messages.js';

const NODE_ID = '0e4f6b2c-1b1a-4f6e-9a7a-3c2b1a0f9e8d';
const TIMING = { heartbeatIntervalMs: 1000, missedHeartbeats: 3, registerTimeoutMs: 10_000 };

function registration(cpu = 2): Registration {
  return {
    nodeId: NODE_ID,
    resumed: false,
    info: { hostname: 'h', ip_address: '127.0.0.1', port: 0, node_type: 'runner', version: '1', platform: 'linux', architecture: 'x64', tags: {} },
    capabilities: {
      runner_types: ['shell'],
      max_resources: { cpu_cores: cpu, memory_mb: 1024, disk_gb: 10, network_mbps: 0 },
      supported_job_types: [],
      features: [],
      protocols: [],
    },
    jobs: {},
  };
}

const registerMessage = { type: 'RegisterNode', data: {} } as unknown as EnvelopeOf<'RegisterNode'>;

function heartbeat(status: 'Ready' | 'Busy' | 'Draining' = 'Ready', nodeId = NODE_ID): EnvelopeOf<'Heartbeat'> {
  return { type: 'Heartbeat', data: { node_id: nodeId, status } } as unknown as EnvelopeOf<'Heartbeat'>;
}

function start(authenticate: () => Promise<Registration> = async () => registration()) {
  const calls = { acks: 0, errors: [] as MusterError[], closed: [] as (MusterError | undefined)[], drains: 0, undrains: 0, jobMessages: 0 };
  const port: NodePort = {
    authenticate,
    acknowledgeRegistration: () => void calls.acks++,
    replyError: (error) => void calls.errors.push(error),
    closeConnection: (error) => void calls.closed.push(error),
    handleJobMessage: () => void calls.jobMessages++,
    sendDrain: () => void calls.drains++,
    sendUndrain: () => void calls.undrains++,
  };
  // The session stamps this on every frame; tests stamp it where a frame arrives.
  const liveness = { lastSeen: Date.now() };
  const actor = createActor(nodeMachine, { input: { ...TIMING, port, liveness } });
  actor.start();
  return { actor, calls, liveness };
}

async function registered() {
  const node = start();
  node.actor.send({ type: 'RegisterNode', message: registerMessage });
  await vi.advanceTimersByTimeAsync(0);
  return node;
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('node machine', () => {
  it('is closed with register_timeout when no RegisterNode comes in time', async () => {
    const { actor, calls } = start();
    await vi.advanceTimersByTimeAsync(TIMING.registerTimeoutMs);
    expect(actor.getSnapshot().status).toBe('done');
    expect(calls.closed.map((e) => e?.code)).toEqual(['register_timeout']);
  });

  it('answers another type before RegisterNode with a fatal not_registered', () => {
    const { actor, calls } = start();
    actor.send({ type: 'Heartbeat', message: heartbeat() });
    expect(actor.getSnapshot().status).toBe('done');
    expect(calls.closed[0]?.code).toBe('not_registered');
  });

  it('keeps waiting after a non-fatal error on the first frame', () => {
    const { actor, calls } = start();
    actor.send({ type: 'frame.error', error: new MusterError('invalid_message', 'bad', { field: 'data.node_info' }) });
    expect(actor.getSnapshot().matches('registering')).toBe(true);
    expect(calls.errors.map((e) => e.code)).toEqual(['invalid_message']);
  });

  it('turns an unknown type before RegisterNode into not_registered', () => {
    const { actor, calls } = start();
    actor.send({ type: 'frame.error', error: new MusterError('unknown_type', 'what') });
    expect(calls.closed[0]?.code).toBe('not_registered');
  });

  it('goes online and acknowledges once authenticated', async () => {
    const { actor, calls } = await registered();
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    expect(actor.getSnapshot().context.nodeId).toBe(NODE_ID);
    expect(calls.acks).toBe(1);
  });

  it('closes with the authentication error when the token is refused', async () => {
    const { actor, calls } = start(async () => {
      throw new MusterError('auth_failed', 'bad signature');
    });
    actor.send({ type: 'RegisterNode', message: registerMessage });
    await vi.advanceTimersByTimeAsync(0);
    expect(actor.getSnapshot().status).toBe('done');
    expect(calls.closed[0]?.code).toBe('auth_failed');
    expect(calls.acks).toBe(0);
  });

  it('dies after its missed heartbeats and one interval of grace, not before', async () => {
    const { actor } = await registered();
    await vi.advanceTimersByTimeAsync(TIMING.heartbeatIntervalMs * 4 - 100);
    expect(actor.getSnapshot().status).toBe('active');
    await vi.advanceTimersByTimeAsync(TIMING.heartbeatIntervalMs + 100);
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('stays alive while any frame arrives, and dies a full window after the last one', async () => {
    const { actor, liveness } = await registered();
    for (let i = 0; i < 20; i++) {
      await vi.advanceTimersByTimeAsync(TIMING.heartbeatIntervalMs);
      liveness.lastSeen = Date.now();
    }
    expect(actor.getSnapshot().status).toBe('active');
    await vi.advanceTimersByTimeAsync(TIMING.heartbeatIntervalMs * 4 - 100);
    expect(actor.getSnapshot().status).toBe('active');
    await vi.advanceTimersByTimeAsync(200);
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('re-arms its liveness timer about once per window, not once per heartbeat interval', async () => {
    const { liveness } = await registered();
    expect(vi.getTimerCount()).toBe(1);
    const armed = vi.spyOn(globalThis, 'setTimeout');
    for (let i = 0; i < 20; i++) {
      await vi.advanceTimersByTimeAsync(TIMING.heartbeatIntervalMs);
      liveness.lastSeen = Date.now();
    }
    // 20 intervals with a 4-interval window: the timer fires (and re-arms) every 3 to 4 intervals.
    expect(armed.mock.calls.length).toBeLessThanOrEqual(7);
    expect(vi.getTimerCount()).toBe(1);
  });

  it('hands job messages of its own node to the supervisor', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'job.message', message: { type: 'JobAccepted', data: { job_id: NODE_ID, attempt: 1 } } });
    expect(calls.jobMessages).toBe(1);
  });

  it('is busy while its slots are taken or it reports Busy, ready again when not', async () => {
    const { actor } = await registered();
    const slot = { attempt: 1, reserved: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } };
    actor.send({ type: 'job.assigned', jobId: 'a', slot });
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    actor.send({ type: 'job.assigned', jobId: 'b', slot });
    expect(actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
    actor.send({ type: 'job.ended', jobId: 'a' });
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    actor.send({ type: 'Heartbeat', message: heartbeat('Busy') });
    expect(actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready') });
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
  });

  it('drains on request and when the node reports Draining', async () => {
    const a = await registered();
    a.actor.send({ type: 'drain' });
    expect(a.actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
    expect(a.calls.drains).toBe(1);
    const b = await registered();
    b.actor.send({ type: 'Heartbeat', message: heartbeat('Draining') });
    expect(b.actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
  });

  it('undrain: asks the node, and is ready again only once the node stops reporting Draining', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'undrain' });
    expect(calls.undrains).toBe(0);
    actor.send({ type: 'drain' });
    actor.send({ type: 'Heartbeat', message: heartbeat('Draining') });
    // A Ready heartbeat before any undrain does not undo an operator's drain.
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready') });
    expect(actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
    actor.send({ type: 'undrain' });
    expect(calls.undrains).toBe(1);
    // A heartbeat sent before the node got the Undrain still says Draining: stay.
    actor.send({ type: 'Heartbeat', message: heartbeat('Draining') });
    expect(actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
    actor.send({ type: 'Heartbeat', message: heartbeat('Busy') });
    expect(actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready') });
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    // Drained again, a later Ready heartbeat alone does not undrain it.
    actor.send({ type: 'drain' });
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready') });
    expect(actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
  });

  it('answers a heartbeat for another node id with invalid_message and stays up', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready', '11111111-1111-4111-8111-111111111111') });
    expect(calls.errors[0]?.field).toBe('data.node_id');
    expect(actor.getSnapshot().status).toBe('active');
  });

  it('keeps the node through a fatal frame error: only the connection closes', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'frame.error', error: new MusterError('frame_too_large', 'big') });
    expect(calls.closed[0]?.code).toBe('frame_too_large');
    expect(actor.getSnapshot().status).toBe('active');
  });

  it('ends with session_replaced when a newer connection takes the node', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'replaced' });
    expect(actor.getSnapshot().output?.reason).toBe('replaced');
    expect(calls.closed[0]?.code).toBe('session_replaced');
  });

  it('ends as deregistered on Deregister, with its jobs in the output', async () => {
    const { actor } = await registered();
    actor.send({ type: 'job.assigned', jobId: 'a', slot: { attempt: 2, reserved: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } } });
    actor.send({ type: 'Deregister', message: { type: 'Deregister', data: { node_id: NODE_ID, reason: 'bye' } } });
    const output = actor.getSnapshot().output;
    expect(output?.reason).toBe('deregistered');
    expect(Object.keys(output?.jobs ?? {})).toEqual(['a']);
  });

  it('leaves no timer behind once dead', async () => {
    const { actor } = await registered();
    actor.send({ type: 'shutdown' });
    expect(actor.getSnapshot().status).toBe('done');
    expect(vi.getTimerCount()).toBe(0);
  });
});
