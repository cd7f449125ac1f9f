// The replica's NATS connection against real nats-server processes: token, NKey and mutual-TLS
// authentication, a clear error when refused, and a status that follows a server restart
// (connected → reconnecting → connected, one reconnect counted).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nkeys } from '@nats-io/nats-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { natsConnectionOptions, natsServerList, natsSettingsOf, openNatsConnection, type OpenNatsConnection } from '../../../supervisor/cluster/nats-connection.js';
import { loadConfig } from '../../../supervisor/config.js';
import { NatsServer } from '../../cluster/nats-server.js';
import { makeTestPki } from '../../transports/test-certificates.js';
import { makeTestOperator } from './nats-operator.js';
import { entered } from './status-waits.js';

const dir = mkdtempSync(join(tmpdir(), 'muster-nats-conn-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const servers: NatsServer[] = [];
const connections: OpenNatsConnection[] = [];
afterEach(async () => {
  await Promise.all(connections.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function server(args: string[] = []): Promise<NatsServer> {
  const s = await NatsServer.start({ args });
  servers.push(s);
  return s;
}

async function open(settings: Parameters<typeof openNatsConnection>[0]): Promise<OpenNatsConnection> {
  const c = await openNatsConnection({ reconnectTimeWaitMs: 50, reconnectJitterMs: 50, ...settings });
  connections.push(c);
  return c;
}

describe('options', () => {
  it('reads a comma-separated list, reconnects forever with jitter, and requires TLS for tls:// or a TLS file', () => {
    expect(natsServerList(' nats://a:4222, ,tls://b:4222 ')).toEqual(['nats://a:4222', 'tls://b:4222']);
    const plain = natsConnectionOptions({ servers: 'nats://a:4222', name: 'replica-a' });
    expect(plain).toMatchObject({ name: 'replica-a', maxReconnectAttempts: -1, reconnectJitter: 1_000, noEcho: false, noAsyncTraces: true });
    expect(plain.tls).toBeUndefined();
    expect(natsConnectionOptions({ servers: ['tls://a:4222'], name: 'r' }).tls).toEqual({});
    expect(natsConnectionOptions({ servers: 'a:4222', name: 'r', tlsCaFile: '/ca.pem' }).tls).toEqual({ caFile: '/ca.pem' });
    expect(() => natsConnectionOptions({ servers: ' , ', name: 'r' })).toThrow('no NATS server given');
  });

  it('reads the creds file on every authentication, so a rotated file is used at the next reconnect', () => {
    const user = nkeys.createUser();
    const file = join(dir, 'replica.creds');
    const creds = (jwt: string): string =>
      `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n` +
      `-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`;
    writeFileSync(file, creds('eyJ0eXAiOiJKV1QifQ.first.sig'));
    const { authenticator } = natsConnectionOptions({ servers: 'nats://a:4222', name: 'r', credsFile: file });
    const authenticate = authenticator as (nonce?: string) => { jwt: string; nkey: string; sig: string };
    const first = authenticate('nonce-1');
    expect(first.jwt).toBe('eyJ0eXAiOiJKV1QifQ.first.sig');
    expect(first.nkey).toBe(user.getPublicKey());
    // The signature of the server's nonce is made with the seed from the file.
    expect(user.verify(new TextEncoder().encode('nonce-1'), Buffer.from(first.sig, 'base64url'))).toBe(true);
    writeFileSync(file, creds('eyJ0eXAiOiJKV1QifQ.rotated.sig'));
    expect(authenticate('nonce-2').jwt).toBe('eyJ0eXAiOiJKV1QifQ.rotated.sig');
  });

  it("takes the config's cluster keys, empty ones left out", () => {
    const config = loadConfig({ env: { MUSTER_NATS_URL: 'nats://a:4222,nats://b:4222', MUSTER_NATS_TOKEN: 't0k' } });
    expect(natsSettingsOf(config, 'replica-a')).toEqual({
      servers: 'nats://a:4222,nats://b:4222',
      name: 'replica-a',
      token: 't0k',
      credsFile: undefined,
      nkeySeedFile: undefined,
      tlsCaFile: undefined,
      tlsCertFile: undefined,
      tlsKeyFile: undefined,
    });
  });
});

describe('against nats-server', () => {
  it('authenticates with a token, and refuses a wrong one with an error naming the server', async () => {
    const s = await server(['--auth', 's3cret']);
    const c = await open({ servers: s.url, name: 'replica-a', token: 's3cret' });
    expect(c.status.status()).toMatchObject({ state: 'connected', reconnects: 0, server: `127.0.0.1:${s.port}` });
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
    await expect(openNatsConnection({ servers: s.url, name: 'replica-b', token: 'wrong' })).rejects.toThrow(
      new RegExp(`^cannot connect to NATS at ${s.url}: .*Authorization Violation`, 'i'),
    );
  });

  it('says at once when no server answers', async () => {
    const s = await server();
    const url = s.url;
    await s.stop();
    await expect(openNatsConnection({ servers: url, name: 'replica-a' })).rejects.toThrow(`cannot connect to NATS at ${url}: connection refused`);
  });

  it('authenticates with an NKey seed file', async () => {
    const user = nkeys.createUser();
    const conf = join(dir, 'nkey.conf');
    writeFileSync(conf, `authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n`);
    const seedFile = join(dir, 'user.nk');
    writeFileSync(seedFile, `${new TextDecoder().decode(user.getSeed())}\n`);
    const s = await server(['-c', conf]);
    const c = await open({ servers: s.url, name: 'replica-a', nkeySeedFile: seedFile });
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
    await expect(openNatsConnection({ servers: s.url, name: 'replica-b' })).rejects.toThrow(/Authorization Violation/i);
  });

  it('authenticates with a creds file (operator mode), and refuses a user of an unknown account', async () => {
    const operator = makeTestOperator();
    const conf = join(dir, 'operator.conf');
    writeFileSync(conf, operator.serverConfig);
    const creds = join(dir, 'replica.creds');
    writeFileSync(creds, operator.userCreds);
    const stranger = join(dir, 'stranger.creds');
    writeFileSync(stranger, operator.strangerCreds);
    const s = await server(['-c', conf]);
    const c = await open({ servers: s.url, name: 'replica-a', credsFile: creds });
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
    await expect(openNatsConnection({ servers: s.url, name: 'replica-b', credsFile: stranger })).rejects.toThrow(/^cannot connect to NATS.*Authorization Violation/i);
  });

  it('connects over mutual TLS with the CA, certificate and key files', async () => {
    const pki = makeTestPki();
    const write = (name: string, text: string): string => {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    const ca = write('ca.pem', pki.ca);
    const client = pki.client('replica-a');
    const tls = ['--tls', '--tlscert', write('server.pem', pki.server.cert), '--tlskey', write('server-key.pem', pki.server.key)];
    const s = await server([...tls, '--tlscacert', ca, '--tlsverify']);
    const url = `tls://localhost:${s.port}`;
    const c = await open({ servers: url, name: 'replica-a', tlsCaFile: ca, tlsCertFile: write('c.pem', client.cert), tlsKeyFile: write('c-key.pem', client.key) });
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
    // Without a client certificate the server refuses the handshake.
    await expect(openNatsConnection({ servers: url, name: 'replica-b', tlsCaFile: ca, connectTimeoutMs: 1_000 })).rejects.toThrow(/^cannot connect to NATS/);
  });

  it('follows a server restart: reconnecting, then connected again with one reconnect counted', async () => {
    const s = await server(['--auth', 's3cret']);
    const c = await open({ servers: s.url, name: 'replica-a', token: 's3cret' });
    const reconnecting = entered(c.status, 'reconnecting');
    await s.kill9();
    const during = await reconnecting;
    expect(during).toMatchObject({ state: 'reconnecting', reconnects: 0 });
    const connected = entered(c.status, 'connected');
    servers.push(await s.restart());
    const after = await connected;
    expect(after).toMatchObject({ state: 'connected', reconnects: 1 });
    expect(Date.parse(after.since)).toBeGreaterThanOrEqual(Date.parse(during.since));
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
  });

  it('notices a hung server (SIGSTOP: its socket stays open) by its unanswered pings, and recovers when it resumes', async () => {
    const s = await server();
    const c = await open({ servers: s.url, name: 'replica-a', pingIntervalMs: 200 });
    const stale = entered(c.status, 'reconnecting');
    await s.pause();
    try {
      expect(await stale).toMatchObject({ state: 'reconnecting', last_error: expect.stringMatching(/^stale connection/) });
    } finally {
      s.resume();
    }
    await entered(c.status, 'connected');
    await expect(c.nc.rtt()).resolves.toBeGreaterThanOrEqual(0);
  });

  it('is closed once closed', async () => {
    const s = await server();
    const c = await open({ servers: s.url, name: 'replica-a' });
    await c.close();
    expect(c.status.status().state).toBe('closed');
  });
});
