// The node actor decides a node's state from messages and timers alone: these tests drive
// it with events and an injected clock (xstate's SimulatedClock, no global timers), and
// watch the effects it emits for the supervisor to carry out.
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { NO_RESOURCES, sumReserved, type JobHoldings, type Resources } from '../../actors/node-capacity.js';
import { nodeMachine, passesJobMessage, skipsActor, type JobMessage, type Registration } from '../../actors/node-machine.js';
import { MusterError } from '../../protocol/errors.js';
import type { EnvelopeOf } from '../../protocol/messages.js';

const NODE_ID = '0e4f6b2c-1b1a-4f6e-9a7a-3c2b1a0f9e8d';
const TIMING = { heartbeatIntervalMs: 1000, missedHeartbeats: 3, registerTimeoutMs: 10_000 };
const ONE_CORE: Resources = { cpu_cores: 1, memory_mb: 0, disk_gb: 0 };

function registration(cpu = 2, features: string[] = []): Registration {
  return {
    nodeId: NODE_ID,
    resumed: false,
    info: { hostname: 'h', ip_address: '127.0.0.1', port: 0, node_type: 'runner', version: '1', platform: 'linux', architecture: 'x64', tags: {} },
    capabilities: {
      runner_types: ['shell'],
      max_resources: { cpu_cores: cpu, memory_mb: 1024, disk_gb: 10, network_mbps: 0 },
      supported_job_types: [],
      features,
      protocols: [],
    },
  };
}

const registerMessage = { type: 'RegisterNode', data: {} } as unknown as EnvelopeOf<'RegisterNode'>;

function heartbeat(status: 'Ready' | 'Busy' | 'Draining' = 'Ready', nodeId = NODE_ID): EnvelopeOf<'Heartbeat'> {
  return { type: 'Heartbeat', data: { node_id: nodeId, status } } as unknown as EnvelopeOf<'Heartbeat'>;
}

/** The simulated clock, counting the timers armed and still pending. */
class TestClock extends SimulatedClock {
  armed = 0;
  private readonly pendingIds = new Set<number>();

  override setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    this.armed++;
    const id: number = super.setTimeout(() => {
      this.pendingIds.delete(id);
      fn();
    }, timeout);
    this.pendingIds.add(id);
    return id;
  }

  override clearTimeout(id: number): void {
    this.pendingIds.delete(id);
    super.clearTimeout(id);
  }

  get pending(): number {
    return this.pendingIds.size;
  }
}

/** What the job coordinator keeps in the plane: the jobs each node holds. */
class Holdings implements JobHoldings {
  readonly jobs = new Map<string, Resources>();

  reservedOn(): Resources {
    return this.jobs.size === 0 ? NO_RESOURCES : sumReserved(this.jobs.values());
  }
}

function start(authenticate: () => Promise<Registration> = async () => registration()) {
  const calls = { acks: 0, errors: [] as MusterError[], closed: [] as (MusterError | undefined)[], drains: 0, undrains: 0, jobMessages: 0, configures: [] as number[] };
  const clock = new TestClock();
  const holdings = new Holdings();
  const actor = createActor(nodeMachine, { clock, input: { ...TIMING, clock, holdings } });
  // The session's part: carry out each emitted effect; authentication answers as an event.
  let authenticated: Promise<void> = Promise.resolve();
  actor.on('authenticate', () => {
    authenticated = authenticate().then(
      (reg) => actor.send({ type: 'auth.done', registration: reg }),
      (error: unknown) => actor.send({ type: 'auth.failed', error }),
    );
  });
  actor.on('acknowledgeRegistration', () => void calls.acks++);
  actor.on('replyError', ({ error }) => void calls.errors.push(error));
  actor.on('closeConnection', ({ error }) => void calls.closed.push(error));
  actor.on('handleJobMessage', () => void calls.jobMessages++);
  actor.on('sendDrain', () => void calls.drains++);
  actor.on('sendUndrain', () => void calls.undrains++);
  actor.on('sendConfigure', ({ heartbeatIntervalMs }) => void calls.configures.push(heartbeatIntervalMs));
  actor.start();
  // The session stamps liveness on every frame; tests do where a frame arrives.
  const heard = (): void => actor.getSnapshot().context.liveness.heard();
  return { actor, calls, clock, holdings, heard, authenticated: () => authenticated };
}

async function registered(features: string[] = []) {
  const node = start(async () => registration(2, features));
  node.actor.send({ type: 'RegisterNode', message: registerMessage });
  await node.authenticated();
  return node;
}

describe('node machine', () => {
  it('is closed with register_timeout when no RegisterNode comes in time', async () => {
    const { actor, calls, clock } = start();
    clock.increment(TIMING.registerTimeoutMs - 1);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(1);
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
    const { actor, calls, authenticated } = start(async () => {
      throw new MusterError('auth_failed', 'bad signature');
    });
    actor.send({ type: 'RegisterNode', message: registerMessage });
    await authenticated();
    expect(actor.getSnapshot().status).toBe('done');
    expect(calls.closed[0]?.code).toBe('auth_failed');
    expect(calls.acks).toBe(0);
  });

  it('dies after its missed heartbeats and one interval of grace, not before', async () => {
    const { actor, clock } = await registered();
    clock.increment(TIMING.heartbeatIntervalMs * 4 - 100);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(TIMING.heartbeatIntervalMs + 100);
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('stays alive while any frame arrives, and dies a full window after the last one', async () => {
    const { actor, clock, heard } = await registered();
    for (let i = 0; i < 20; i++) {
      clock.increment(TIMING.heartbeatIntervalMs);
      heard();
    }
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(TIMING.heartbeatIntervalMs * 4 - 100);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(200);
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('re-arms its liveness timer about once per window, not once per heartbeat interval', async () => {
    const { clock, heard } = await registered();
    expect(clock.pending).toBe(1);
    const armedBefore = clock.armed;
    for (let i = 0; i < 20; i++) {
      clock.increment(TIMING.heartbeatIntervalMs);
      heard();
    }
    // 20 intervals with a 4-interval window: the timer fires (and re-arms) every 3 to 4 intervals.
    expect(clock.armed - armedBefore).toBeLessThanOrEqual(7);
    expect(clock.pending).toBe(1);
  });

  it('hands job messages of its own node to the supervisor', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'job.message', message: { type: 'JobAccepted', data: { job_id: NODE_ID, attempt: 1 } } });
    expect(calls.jobMessages).toBe(1);
  });

  it('is busy while its slots are taken or it reports Busy, ready again when not', async () => {
    const { actor, holdings } = await registered();
    // The holdings change first (the coordinator's placements), then the actor is told.
    holdings.jobs.set('a', ONE_CORE);
    actor.send({ type: 'job.assigned', jobId: 'a' });
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    holdings.jobs.set('b', ONE_CORE);
    actor.send({ type: 'job.assigned', jobId: 'b' });
    expect(actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
    holdings.jobs.delete('a');
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

  it('undrain: a node that does not offer the undrain feature is never sent Undrain (a v1 client would not know it)', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'drain' });
    actor.send({ type: 'undrain' });
    expect(calls.undrains).toBe(0);
    expect(actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
  });

  it('undrain: asks the node, and is ready again only once the node stops reporting Draining', async () => {
    const { actor, calls } = await registered(['undrain']);
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

  it('ends as deregistered on Deregister', async () => {
    const { actor, holdings } = await registered();
    holdings.jobs.set('a', ONE_CORE);
    actor.send({ type: 'job.assigned', jobId: 'a' });
    actor.send({ type: 'Deregister', message: { type: 'Deregister', data: { node_id: NODE_ID, reason: 'bye' } } });
    expect(actor.getSnapshot().output).toEqual({ nodeId: NODE_ID, reason: 'deregistered' });
  });

  it('leaves no timer behind once dead', async () => {
    const { actor, clock } = await registered();
    actor.send({ type: 'shutdown' });
    expect(actor.getSnapshot().status).toBe('done');
    expect(clock.pending).toBe(0);
  });

  it('stops the register timer once RegisterNode is in: authentication is the plane\'s time', async () => {
    let admit: (reg: Registration) => void = () => undefined;
    const { actor, calls, clock, authenticated } = start(() => new Promise((resolve) => (admit = resolve)));
    clock.increment(TIMING.registerTimeoutMs - 1);
    actor.send({ type: 'RegisterNode', message: registerMessage });
    expect(clock.pending).toBe(0);
    clock.increment(TIMING.registerTimeoutMs * 3);
    expect(actor.getSnapshot().matches({ registering: 'authenticating' })).toBe(true);
    admit(registration());
    await authenticated();
    expect(actor.getSnapshot().matches({ online: 'ready' })).toBe(true);
    expect(calls.closed).toEqual([]);
  });

  it('ends a node whose connection closes before it registered', () => {
    const { actor, clock } = start();
    actor.send({ type: 'connection.closed' });
    expect(actor.getSnapshot().output?.reason).toBe('disconnected');
    expect(clock.pending).toBe(0);
  });

  it('shows a dropped connection at once, takes no job, and keeps the node for its window', async () => {
    const { actor, calls, clock, holdings } = await registered();
    actor.send({ type: 'connection.closed' });
    const snapshot = actor.getSnapshot();
    expect(snapshot.context.connected).toBe(false);
    expect(snapshot.matches({ online: 'busy' })).toBe(true);
    expect(calls.closed).toEqual([]);
    // A job that ends frees room, but there is no connection to give a job to.
    holdings.jobs.set('a', ONE_CORE);
    actor.send({ type: 'job.assigned', jobId: 'a' });
    holdings.jobs.delete('a');
    actor.send({ type: 'job.ended', jobId: 'a' });
    expect(actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
    // Its heartbeat window still runs from its last frame; then it is dead and its jobs go back.
    clock.increment(TIMING.heartbeatIntervalMs * 4 - 1);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(1);
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('ends a disconnected node as replaced when it resumes on a new connection', async () => {
    const { actor } = await registered();
    actor.send({ type: 'connection.closed' });
    actor.send({ type: 'replaced' });
    expect(actor.getSnapshot().output?.reason).toBe('replaced');
  });

  it('keeps a draining node draining when its connection drops', async () => {
    const { actor } = await registered();
    actor.send({ type: 'drain' });
    actor.send({ type: 'connection.closed' });
    expect(actor.getSnapshot().matches({ online: 'draining' })).toBe(true);
    expect(actor.getSnapshot().context.connected).toBe(false);
  });

  it('is busy from the start when it resumes holding jobs that fill it', async () => {
    const node = start(async () => ({ ...registration(1), resumed: true }));
    node.holdings.jobs.set('kept', ONE_CORE);
    node.actor.send({ type: 'RegisterNode', message: registerMessage });
    await node.authenticated();
    expect(node.actor.getSnapshot().matches({ online: 'busy' })).toBe(true);
  });

  it('decides which heartbeats need no transition: a steady one online, nothing else', async () => {
    const waiting = start();
    expect(skipsActor(waiting.actor.getSnapshot(), heartbeat())).toBe(false);
    const { actor } = await registered();
    const before = actor.getSnapshot();
    expect(skipsActor(before, heartbeat('Ready'))).toBe(true);
    expect(skipsActor(before, heartbeat('Busy'))).toBe(false);
    expect(skipsActor(before, heartbeat('Draining'))).toBe(false);
    expect(skipsActor(before, heartbeat('Ready', '11111111-1111-4111-8111-111111111111'))).toBe(false);
    // Delivered anyway, the machine does nothing with it.
    actor.send({ type: 'Heartbeat', message: heartbeat('Ready') });
    expect(actor.getSnapshot().value).toEqual(before.value);
    expect(actor.getSnapshot().context).toEqual(before.context);
  });

  it('decides which job messages it only hands on: from this node, online (busy or draining too), nothing else', async () => {
    const result = (nodeId: string): JobMessage =>
      ({ type: 'JobResult', data: { job_id: 'j', attempt: 1, node_id: nodeId, result: {}, metrics: {} } }) as unknown as JobMessage;
    const accepted = { type: 'JobAccepted', data: { job_id: 'j', attempt: 1 } } as unknown as JobMessage;
    const waiting = start();
    expect(passesJobMessage(waiting.actor.getSnapshot(), accepted)).toBe(false);
    const { actor, calls, holdings } = await registered();
    const foreign = result('11111111-1111-4111-8111-111111111111');
    for (const status of ['ready', 'busy', 'draining'] as const) {
      if (status === 'busy') {
        holdings.jobs.set('j', { cpu_cores: 2, memory_mb: 0, disk_gb: 0 });
        actor.send({ type: 'job.assigned', jobId: 'j' });
      }
      if (status === 'draining') actor.send({ type: 'drain' });
      const before = actor.getSnapshot();
      expect(before.value).toEqual({ online: status });
      expect(passesJobMessage(before, accepted)).toBe(true);
      expect(passesJobMessage(before, result(NODE_ID))).toBe(true);
      expect(passesJobMessage(before, foreign)).toBe(false);
      // Delivered anyway, the machine only hands them on: the same state and context.
      const handed = calls.jobMessages;
      actor.send({ type: 'job.message', message: accepted });
      actor.send({ type: 'job.message', message: result(NODE_ID) });
      expect(calls.jobMessages).toBe(handed + 2);
      expect(actor.getSnapshot().value).toEqual(before.value);
      expect(actor.getSnapshot().context).toEqual(before.context);
    }
  });

  it('ends the node, answered internal and closed, when one of its effects fails', async () => {
    const { actor, calls } = await registered();
    actor.send({ type: 'effect.failed', error: new Error('disk full') });
    expect(actor.getSnapshot().output?.reason).toBe('failed');
    expect(calls.closed.map((e) => [e?.code, e?.fatal])).toEqual([['internal', true]]);
  });
});

// The plane's heartbeat governor changes a node's interval with `Configure` as the fleet grows
// or shrinks (issue 9 item 3). A node goes on at its old interval until Configure reaches it,
// then sends at the new one (as agent/agent.ts does: its next heartbeat one new interval later).
describe('node machine: a change of heartbeat interval', () => {
  const WINDOW = TIMING.missedHeartbeats + 1;
  const STEP_MS = 10;

  /**
   * Drives a registered node at `fromMs`, changes it to `toMs` at `phase` (0..1) of an old
   * interval after a heartbeat, delivers the Configure `latencyMs` later, and heartbeats on for
   * 10 longer intervals; then the node falls silent. Returns whether it was ever expired while
   * heartbeating, and how long after its last frame it expired once silent.
   */
  async function across(fromMs: number, toMs: number, phase: number, latencyMs: number) {
    const node = await registered();
    const { actor, clock, heard, calls } = node;
    if (fromMs !== TIMING.heartbeatIntervalMs) actor.send({ type: 'configure', heartbeatIntervalMs: fromMs, announce: false });
    let interval = fromMs;
    let nextBeat = clock.now() + interval;
    let lastBeat = clock.now();
    const changeAt = clock.now() + 5 * fromMs + Math.round(phase * fromMs);
    let receiveAt = Infinity;
    const endAt = changeAt + 10 * Math.max(fromMs, toMs);
    let diedWhileBeating = false;
    const step = (): void => {
      clock.increment(STEP_MS);
      const now = clock.now();
      if (now === changeAt) {
        actor.send({ type: 'configure', heartbeatIntervalMs: toMs, announce: true });
        receiveAt = now + latencyMs;
      }
      if (now >= receiveAt) {
        interval = toMs;
        nextBeat = now + interval;
        receiveAt = Infinity;
      }
      if (now >= nextBeat && now < endAt) {
        heard();
        lastBeat = now;
        nextBeat = now + interval;
      }
    };
    while (clock.now() < endAt) {
      step();
      // Whenever the liveness check would run, not only when its timer happens to fire.
      if (actor.getSnapshot().status !== 'active' || actor.getSnapshot().context.liveness.expired()) diedWhileBeating = true;
    }
    expect(calls.configures).toEqual([toMs]);
    while (actor.getSnapshot().status === 'active' && clock.now() < endAt + 100 * Math.max(fromMs, toMs)) step();
    expect(actor.getSnapshot().output?.reason).toBe('expired');
    return { diedWhileBeating, silentFor: clock.now() - lastBeat };
  }

  const phases = [0, 0.01, 0.5, 0.99];

  it('longer: a node heartbeating at the old interval until Configure reaches it, then at the new one, is never expired', async () => {
    for (const phase of phases) {
      for (const latency of [0, 200, 990]) {
        const { diedWhileBeating, silentFor } = await across(1000, 8000, phase, latency);
        expect({ phase, latency, diedWhileBeating }).toEqual({ phase, latency, diedWhileBeating: false });
        // Its window is now the new interval's: silent for the old window it is still alive.
        expect(silentFor).toBeGreaterThan(1000 * WINDOW);
        expect(silentFor).toBeLessThanOrEqual(8000 * WINDOW + STEP_MS);
      }
    }
  });

  it('shorter: the old deadline holds until the node has had time to comply, so it is never expired; then the new window applies', async () => {
    for (const phase of phases) {
      for (const latency of [0, 200, 990]) {
        const { diedWhileBeating, silentFor } = await across(8000, 1000, phase, latency);
        expect({ phase, latency, diedWhileBeating }).toEqual({ phase, latency, diedWhileBeating: false });
        // Ten new intervals after the change, a silent node expires by the new, shorter window.
        expect(silentFor).toBeGreaterThanOrEqual(1000 * WINDOW);
        expect(silentFor).toBeLessThanOrEqual(1000 * WINDOW + STEP_MS);
      }
    }
  });

  it('a node that never hears the change (silent since before it) expires no later than the old window said', async () => {
    const { actor, clock } = await registered();
    actor.send({ type: 'configure', heartbeatIntervalMs: 8000, announce: false });
    clock.increment(1000);
    actor.send({ type: 'configure', heartbeatIntervalMs: 1000, announce: true });
    clock.increment(8000 * WINDOW - 1000 - 1);
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(1);
    expect(actor.getSnapshot().output?.reason).toBe('expired');
  });

  it('sends Configure only for a change it is asked to announce, and keeps one liveness timer', async () => {
    const { actor, calls, clock } = await registered();
    actor.send({ type: 'configure', heartbeatIntervalMs: TIMING.heartbeatIntervalMs, announce: true });
    actor.send({ type: 'configure', heartbeatIntervalMs: 3000, announce: false });
    actor.send({ type: 'configure', heartbeatIntervalMs: 3000, announce: true });
    expect(calls.configures).toEqual([]);
    actor.send({ type: 'configure', heartbeatIntervalMs: 6000, announce: true });
    expect(calls.configures).toEqual([6000]);
    expect(clock.pending).toBe(1);
  });
});
