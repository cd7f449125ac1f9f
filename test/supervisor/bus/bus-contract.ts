// The Bus contract: every bus (in-process now, NATS in a cluster) runs this same suite, so that
// the scheduler, the API's event streams and the coordinator rely on one behaviour. Delivery may
// be asynchronous: the suite awaits what it expects with a deadline, and a fixture's `settle`
// says when everything published so far has been delivered, so that "nothing more arrives" can
// be checked without sleeping.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Bus, BusEvent } from '../../../supervisor/bus/bus.js';

export interface BusFixture {
  bus: Bus;
  /** Resolves once every event published so far has reached this bus's subscribers (or never will). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** A subscriber that records what it hears, and waits for a count with a deadline that fails the test. */
export class Recorder {
  readonly events: BusEvent[] = [];
  readonly traceparents: (string | undefined)[] = [];
  private waiters: { done: () => boolean; resolve: () => void }[] = [];

  readonly handler = (event: BusEvent, traceparent?: string): void => {
    this.events.push(event);
    this.traceparents.push(traceparent);
    this.waiters = this.waiters.filter((w) => (w.done() ? (w.resolve(), false) : true));
  };

  /** Resolves with every event heard once there are `count`; fails after `ms`. */
  async waitFor(count: number, ms = 10_000): Promise<BusEvent[]> {
    await this.until(() => this.events.length >= count, `${count} events`, ms);
    return this.events;
  }

  /** Resolves once `done()` holds, checked after each event heard; fails after `ms`. */
  async until(done: () => boolean, what: string, ms = 10_000): Promise<void> {
    if (done()) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.waiters.push({ done, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ${what} within ${ms} ms (heard ${this.events.length})`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/** The n-th test id, a UUID as job and node ids are. */
export const testId = (n: number, prefix = '00000000'): string => `${prefix}-0000-4000-8000-${String(n).padStart(12, '0')}`;
const JOB = testId;

export function jobEvent(n: number, attempt = 1): BusEvent {
  return { kind: 'job', job_id: JOB(n), state: 'Queued', attempt };
}

export const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

export function busContract(name: string, open: (onHandlerError: (err: unknown) => void) => Promise<BusFixture>): void {
  describe(`Bus contract: ${name}`, () => {
    let fixture: BusFixture;
    let handlerErrors: unknown[];
    beforeEach(async () => {
      handlerErrors = [];
      fixture = await open((err) => handlerErrors.push(err));
    });
    afterEach(async () => {
      await fixture.close();
    });

    it('delivers every event to every subscriber, in the order it was published', async () => {
      const recorders = [new Recorder(), new Recorder(), new Recorder()];
      for (const r of recorders) fixture.bus.subscribe(r.handler);
      const events: BusEvent[] = [
        ...Array.from({ length: 100 }, (_, i) => jobEvent(i)),
        { kind: 'log', job_id: JOB(1), attempt: 2 },
        { kind: 'node', node_id: JOB(2), state: 'ready', owner: 'replica-a' },
        { kind: 'job', job_id: JOB(3), state: 'Assigned', attempt: 1, node_id: JOB(2) },
      ];
      for (const e of events) fixture.bus.publish(e);
      for (const r of recorders) expect(await r.waitFor(events.length)).toEqual(events);
      await fixture.settle();
      for (const r of recorders) expect(r.events).toHaveLength(events.length);
    });

    it("hands subscribers the publisher's traceparent", async () => {
      const r = new Recorder();
      fixture.bus.subscribe(r.handler);
      fixture.bus.publish(jobEvent(1), TRACEPARENT);
      await r.waitFor(1);
      expect(r.traceparents).toEqual([TRACEPARENT]);
    });

    it('hears only events published after it subscribed', async () => {
      const early = new Recorder();
      fixture.bus.subscribe(early.handler);
      fixture.bus.publish(jobEvent(1));
      await early.waitFor(1);
      const late = new Recorder();
      fixture.bus.subscribe(late.handler);
      fixture.bus.publish(jobEvent(2));
      await early.waitFor(2);
      await late.waitFor(1);
      await fixture.settle();
      expect(late.events).toEqual([jobEvent(2)]);
    });

    it('stops delivering to a subscriber that unsubscribed, and only to it', async () => {
      const gone = new Recorder();
      const stays = new Recorder();
      const unsubscribe = fixture.bus.subscribe(gone.handler);
      fixture.bus.subscribe(stays.handler);
      fixture.bus.publish(jobEvent(1));
      await gone.waitFor(1);
      unsubscribe();
      fixture.bus.publish(jobEvent(2));
      fixture.bus.publish(jobEvent(3));
      await stays.waitFor(3);
      await fixture.settle();
      expect(gone.events).toEqual([jobEvent(1)]);
    });

    it('isolates a subscriber that throws: the others hear every event, the error is reported', async () => {
      const before = new Recorder();
      const after = new Recorder();
      fixture.bus.subscribe(before.handler);
      fixture.bus.subscribe(() => {
        throw new Error('subscriber broke');
      });
      fixture.bus.subscribe(after.handler);
      expect(() => {
        fixture.bus.publish(jobEvent(1));
        fixture.bus.publish(jobEvent(2));
      }).not.toThrow();
      await before.waitFor(2);
      await after.waitFor(2);
      expect(after.events).toEqual([jobEvent(1), jobEvent(2)]);
      expect(handlerErrors.map((e) => (e as Error).message)).toEqual(['subscriber broke', 'subscriber broke']);
    });

    it('delivers nothing once closed, and publishing then is harmless', async () => {
      const r = new Recorder();
      fixture.bus.subscribe(r.handler);
      fixture.bus.publish(jobEvent(1));
      await r.waitFor(1);
      await fixture.bus.close();
      expect(() => fixture.bus.publish(jobEvent(2))).not.toThrow();
      await fixture.settle();
      expect(r.events).toEqual([jobEvent(1)]);
    });
  });
}
