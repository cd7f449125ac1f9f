// One real nats-server for a test file (started before its tests, stopped after), connections
// to it with quick reconnects, and what each test opened closed after it, newest first.
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/nats-core';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { NatsServer } from '../../cluster/nats-server.js';

export interface NatsFixture {
  /** The file's server (started in `beforeAll`). */
  readonly server: NatsServer;
  /** Closed after the test that pushed them, newest first. */
  readonly closers: Array<() => Promise<unknown>>;
  /** A connection to `url` (default the server), closed after the test. */
  connection(url?: string): Promise<NatsConnection>;
}

export function natsFixture(): NatsFixture {
  let server: NatsServer | undefined;
  const closers: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    server = await NatsServer.start();
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => {});
  });
  const fixture: NatsFixture = {
    get server(): NatsServer {
      if (server === undefined) throw new Error('the NATS server starts in beforeAll');
      return server;
    },
    closers,
    async connection(url = fixture.server.url) {
      const nc = await connect({ servers: url, reconnectTimeWait: 50, maxReconnectAttempts: -1, ignoreClusterUpdates: true });
      closers.push(() => nc.close());
      return nc;
    },
  };
  return fixture;
}
