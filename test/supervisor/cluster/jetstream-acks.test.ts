// JetStream publishes acknowledged on one reply subscription (jetstream-acks.ts) against a real
// nats-server: the answers the job store relies on are those of js.publish / kv.update.
import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { errors } from '@nats-io/transport-node';
import { JetStreamAcks } from '../../../supervisor/cluster/jetstream-acks.js';
import { isWrongLast } from '../../../supervisor/cluster/jetstream-errors.js';
import { natsTrouble } from '../../../supervisor/cluster/nats-unavailable.js';
import { natsFixture } from './nats-fixture.js';

const nats = natsFixture();
let n = 0;
const data = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('JetStreamAcks', () => {
  it('answers each publish with its revision, and a lost compare-and-set as wrong last sequence', async () => {
    const nc = await nats.connection();
    const bucket = `acks-${++n}`;
    const kv = await new Kvm(nc).create(bucket);
    const acks = new JetStreamAcks(nc, 2_000);
    nats.closers.push(async () => acks.close());
    const subject = `$KV.${bucket}.job`;
    const created = await acks.publish(subject, data('one'), 0);
    // Many at once, each matched to its own answer: creates of other keys and one stale update.
    const [other, updated, stale] = await Promise.allSettled([
      acks.publish(`$KV.${bucket}.other`, data('x'), 0),
      acks.publish(subject, data('two'), created),
      acks.publish(subject, data('three'), created),
    ]);
    expect(other.status).toBe('fulfilled');
    expect(updated).toEqual({ status: 'fulfilled', value: expect.any(Number) });
    expect(stale.status).toBe('rejected');
    expect(isWrongLast((stale as PromiseRejectedResult).reason)).toBe(true);
    await expect(acks.publish(subject, data('again'), 0)).rejects.toSatisfy(isWrongLast);
    const entry = await kv.get('job');
    expect({ revision: entry?.revision, value: entry?.string() }).toEqual({ revision: (updated as PromiseFulfilledResult<number>).value, value: 'two' });
  });

  it('tells no responders, a timeout and a closed connection apart as the store does', async () => {
    const nc = await nats.connection();
    const acks = new JetStreamAcks(nc, 300);
    nats.closers.push(async () => acks.close());
    // No stream takes this subject: the server answers no responders.
    await expect(acks.publish(`nowhere.${++n}`, data('x'))).rejects.toSatisfy((err) => natsTrouble(err) === 'no_responders');
    // A subscriber that never answers: the publish times out.
    const silent = `silent.${++n}`;
    nc.subscribe(silent, { callback: () => undefined });
    await nc.flush();
    await expect(acks.publish(silent, data('x'))).rejects.toBeInstanceOf(errors.TimeoutError);
    const pending = acks.publish(silent, data('y'));
    await nc.close();
    await expect(pending).rejects.toSatisfy((err) => natsTrouble(err) === 'disconnected');
    await expect(acks.publish(silent, data('z'))).rejects.toSatisfy((err) => natsTrouble(err) === 'disconnected');
  });
});
