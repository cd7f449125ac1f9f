// The replicas check against a real nats-server 2.9.10 (the one Debian ships): R3 refused with
// an error naming issue 4320 and the version, R1 accepted and usable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsServer } from '../../cluster/nats-server.js';
import { MusterError } from '../../../protocol/errors.js';
import {
  checkCasReplicas,
  checkConnectionReplicas,
  parseServerVersion,
  serverVersion,
  versionAtLeast,
} from '../../../supervisor/cluster/server-version.js';

describe('server version', () => {
  it('parses and compares versions', () => {
    expect(parseServerVersion('2.9.10')).toEqual([2, 9, 10]);
    expect(parseServerVersion('v2.10.4-beta.1')).toEqual([2, 10, 4]);
    expect(versionAtLeast('2.9.10', '2.9.21')).toBe(false);
    expect(versionAtLeast('2.9.21', '2.9.21')).toBe(true);
    expect(versionAtLeast('2.10.0', '2.9.21')).toBe(true);
    expect(versionAtLeast('3.0.0', '2.9.21')).toBe(true);
    expect(versionAtLeast('1.99.99', '2.9.21')).toBe(false);
    expect(() => parseServerVersion('nonsense')).toThrow(MusterError);
  });

  it('allows R3 from 2.9.21 on and R1 always', () => {
    expect(() => checkCasReplicas('2.9.21', 3, ['muster-owners'])).not.toThrow();
    expect(() => checkCasReplicas('2.11.1', 5, ['muster-owners'])).not.toThrow();
    expect(() => checkCasReplicas('2.9.0', 1, ['muster-owners'])).not.toThrow();
    expect(() => checkCasReplicas('2.9.20', 3, ['muster-owners'])).toThrow(/4320/);
    expect(() => checkCasReplicas('2.9.21', 0, ['muster-owners'])).toThrow(MusterError);
  });

  describe('on the real nats-server', () => {
    let server: NatsServer;
    let nc: NatsConnection;
    beforeAll(async () => {
      server = await NatsServer.start();
      nc = await connect({ servers: server.url });
    });
    afterAll(async () => {
      await nc?.close();
      await server?.stop();
    });

    it('reads the version from the connection', () => {
      expect(serverVersion(nc)).toMatch(/^\d+\.\d+\.\d+/);
    });

    it('refuses R3 on a server older than 2.9.21, naming the issue and the version', () => {
      const version = serverVersion(nc);
      if (versionAtLeast(version, '2.9.21')) return expect.fail(`this test needs nats-server < 2.9.21, found ${version}`);
      let caught: unknown;
      try {
        checkConnectionReplicas(nc, 3, ['muster-leases', 'muster-owners', 'muster-jobs']);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(MusterError);
      const message = (caught as MusterError).message;
      expect(message).toContain('issue 4320');
      expect(message).toContain(version);
      expect(message).toContain('muster-owners');
    });

    it('accepts R1, and an R1 bucket works', async () => {
      expect(() => checkConnectionReplicas(nc, 1, ['muster-leases'])).not.toThrow();
      const kv = await new Kvm(nc).create('muster-version-probe', { replicas: 1 });
      expect(await kv.create('k', 'v')).toBeGreaterThan(0);
    });
  });
});
