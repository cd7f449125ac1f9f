// A replica started before NATS, or beside a NATS without JetStream, against real nats-server
// processes: it waits for a server that comes up and then starts; it gives up after
// natsStartupWaitMs on one that never offers JetStream, saying so; it does not wait on a server
// that refuses its credentials.
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NatsServer } from '../../cluster/nats-server.js';
import { nextEvent } from './await-event.js';
import { capturedLogger } from './captured-logger.js';
import { Replicas } from './replica-fixture.js';

const WAITING = 'waiting for NATS and JetStream to answer';

let nats: NatsServer | undefined;
let natsUrl = '';
const replicas = new Replicas(() => natsUrl);

afterEach(async () => {
  await replicas.stopAll();
  await nats?.stop();
  nats = undefined;
});

/** A port of loopback that nothing listens on (taken and given back). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('a replica starting before NATS answers', () => {
  it('waits for a NATS server that is not up yet, and starts once it is', async () => {
    const port = await freePort();
    natsUrl = `nats://127.0.0.1:${port}`;
    const { logger, lines } = capturedLogger();
    const waiting = nextEvent(lines, (l) => l.msg === WAITING, 15_000, 'a waiting line');
    const started = replicas.start('late-nats', {}, logger);
    expect(await waiting).toMatchObject({ level: 40, nats: natsUrl, why: expect.stringMatching(/^cannot connect to NATS at .*connection refused/) });

    const lease = nextEvent(lines, (l) => l.msg === 'cluster replica: lease taken', 20_000, 'the lease taken');
    nats = await NatsServer.start({ port });
    const plane = await started;
    await lease;
    expect(replicas.planes).toContain(plane);
  }, 40_000);

  it('gives up after natsStartupWaitMs on a NATS without JetStream, and says what did not answer', async () => {
    nats = await NatsServer.start({ jetstream: false });
    natsUrl = nats.url;
    const { logger, all } = capturedLogger();
    await expect(replicas.start('no-jetstream', { natsStartupWaitMs: 1_500 }, logger)).rejects.toThrow(
      /^NATS at nats:\/\/127\.0\.0\.1:\d+ did not answer within \d+ s of start \(natsStartupWaitMs\): JetStream does not answer .*nats-server -js/,
    );
    const waits = all.filter((l) => l.msg === WAITING);
    expect(waits.length).toBeGreaterThanOrEqual(1);
    expect(waits[0]).toMatchObject({ why: expect.stringMatching(/^JetStream does not answer/) });
  }, 30_000);

  it('does not wait on a server that refuses its credentials', async () => {
    nats = await NatsServer.start({ args: ['--user', 'muster', '--pass', 'right-password'] });
    natsUrl = nats.url;
    const { logger, all } = capturedLogger();
    // A minute's wait, were it taken: the test's own timeout would end first.
    await expect(replicas.start('bad-credentials', { natsStartupWaitMs: 60_000 }, logger)).rejects.toThrow(/^cannot connect to NATS at .*Authorization Violation/i);
    expect(all.filter((l) => l.msg === WAITING)).toEqual([]);
  }, 20_000);
});
