// ReplicaBus against a real nats-server: the Bus contract (its own events, all kinds, in the order
// published), then what it does between replicas: another replica's node events arrive over
// NATS, its job events arrive only from the job store's changes (a job event on NATS, as an older
// replica sends it, is dropped), and none of its own events comes back twice.
import { describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/nats-core';
import type { BusEvent } from '../../../supervisor/bus/bus.js';
import type { JobChange } from '../../../supervisor/cluster/jetstream-job-store.js';
import { NatsBus } from '../../../supervisor/cluster/nats-bus.js';
import { ReplicaBus, type JobChangeSource } from '../../../supervisor/cluster/replica-bus.js';
import { createLogger } from '../../../observability/logger.js';
import { busContract, jobEvent, Recorder, testId } from '../bus/bus-contract.js';
import { natsFixture } from './nats-fixture.js';

const logger = createLogger({ level: 'silent' });
const nats = natsFixture();

/** A job store's change feed that the test drives. */
class Changes implements JobChangeSource {
  readonly handlers = new Set<(change: JobChange) => void>();

  onForeignChange(handler: (change: JobChange) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  emit(change: JobChange): void {
    for (const handler of this.handlers) handler(change);
  }
}

async function replicaBus(onHandlerError: (err: unknown) => void = () => {}): Promise<{ bus: ReplicaBus; nc: NatsConnection; changes: Changes }> {
  const nc = await nats.connection();
  const changes = new Changes();
  const bus = new ReplicaBus(await NatsBus.start({ nc, logger, onHandlerError, hearOwn: false }), changes, onHandlerError);
  nats.closers.push(() => bus.close());
  return { bus, nc, changes };
}

busContract('ReplicaBus', async (onHandlerError) => {
  const { bus, nc } = await replicaBus(onHandlerError);
  // Its own events are delivered in process; a ping answered means none is coming back either.
  return { bus, settle: () => nc.flush(), close: () => bus.close() };
});

describe('ReplicaBus between replicas', () => {
  it("hears another replica's node events over NATS and its job changes only from the store", async () => {
    const a = await replicaBus();
    const b = await replicaBus();
    const heard = new Recorder();
    b.bus.subscribe(heard.handler);
    const node: BusEvent = { kind: 'node', node_id: testId(1), state: 'busy', owner: 'replica-a' };
    a.bus.publish(jobEvent(1)); // stays on A: B hears it from its store's watch
    a.bus.publish(node);
    await heard.waitFor(1);
    b.changes.emit({ kind: 'job', job_id: testId(1), state: 'Queued', attempt: 1 });
    await heard.waitFor(2);
    // A job event on NATS, as a replica of an older version publishes it: B does not take it.
    const older = await NatsBus.start({ nc: await nats.connection(), logger });
    nats.closers.push(() => older.close());
    older.publish(jobEvent(2));
    older.publish({ ...node, state: 'ready' });
    await heard.waitFor(3);
    await a.nc.flush();
    await b.nc.flush();
    expect(heard.events).toEqual([node, jobEvent(1), { ...node, state: 'ready' }]);
  });

  it('delivers its own events once: in process, not again from NATS', async () => {
    const a = await replicaBus();
    const heard = new Recorder();
    a.bus.subscribe(heard.handler);
    const node: BusEvent = { kind: 'node', node_id: testId(2), state: 'ready', owner: 'replica-a' };
    a.bus.publish(node);
    a.bus.publish({ kind: 'log', job_id: testId(3), attempt: 1 });
    expect(heard.events).toHaveLength(2); // at once
    await a.bus.flush();
    await a.nc.flush();
    expect(heard.events).toEqual([node, { kind: 'log', job_id: testId(3), attempt: 1 }]);
  });
});
