// Settings come from defaults < config file < MUSTER_* variables < flags, with one table of defaults;
// the whole configuration is checked against its ranges, and a bad setting is refused naming its
// source (file, variable or flag) before anything starts (issue 7 item 5). The check runs apart
// from reading (checkConfig, which the plane runs first), so that the CLI's client commands need
// not load TypeBox.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkConfig } from '../../supervisor/config-ranges.js';
import { ConfigError, DEFAULTS, envName, loadConfig as readConfig, type ConfigSources, type Config } from '../../supervisor/config.js';
import { tcpAddress } from '../../transports/tcp.js';
import { startTlsPlane } from './bad-input-links.js';
import { SECRET } from './security-plane.js';
import { MUSTER_BIN } from '../muster-process.js';

/** Reads and checks, as the control plane does before it starts. */
function loadConfig(sources: ConfigSources): Config {
  const config = readConfig(sources);
  checkConfig(config);
  return config;
}

function configFile(content: unknown): string {
  const path = join(mkdtempSync(join(tmpdir(), 'muster-config-')), 'muster.json');
  writeFileSync(path, JSON.stringify(content));
  return path;
}

describe('loadConfig', () => {
  it('gives the documented defaults, with the Unix socket in the data dir', () => {
    const config = loadConfig({ env: {} });
    expect(config.tcp).toBe('127.0.0.1:7420');
    expect(config.http).toBe('127.0.0.1:7480');
    expect(config.heartbeatIntervalMs).toBe(DEFAULTS.heartbeatIntervalMs);
    expect(config.unix).toBe(join('./.muster', 'muster.sock'));
  });

  it('applies file < environment < flags', () => {
    const file = configFile({ heartbeatIntervalMs: 1000, acceptTimeoutMs: 2000, maxAttempts: 7 });
    const config = loadConfig({
      file,
      env: { MUSTER_ACCEPT_TIMEOUT_MS: '3000', MUSTER_MAX_ATTEMPTS: '5' },
      overrides: { maxAttempts: 4, dataDir: '/tmp/x' },
    });
    expect(config.heartbeatIntervalMs).toBe(1000);
    expect(config.acceptTimeoutMs).toBe(3000);
    expect(config.maxAttempts).toBe(4);
    expect(config.unix).toBe('/tmp/x/muster.sock');
  });

  it('names environment variables after the keys', () => {
    expect(envName('heartbeatIntervalMs')).toBe('MUSTER_HEARTBEAT_INTERVAL_MS');
    expect(envName('dataDir')).toBe('MUSTER_DATA_DIR');
  });

  it('refuses unknown keys and bad numbers, naming where they came from', () => {
    expect(() => loadConfig({ file: configFile({ heartbeat: 1 }), env: {} })).toThrow(/unknown setting heartbeat/);
    expect(() => loadConfig({ env: { MUSTER_MAX_ATTEMPTS: 'many' } })).toThrow(/MUSTER_MAX_ATTEMPTS/);
  });

  it('reads the config file named by MUSTER_CONFIG', () => {
    const file = configFile({ tcp: 'off' });
    expect(loadConfig({ env: { MUSTER_CONFIG: file } }).tcp).toBe('off');
  });

  it('accepts the example config shipped in deploy/', () => {
    expect(loadConfig({ file: 'deploy/muster.example.json', env: {} }).tcp).toBe('0.0.0.0:7420');
  });

  it('refuses heartbeatIntervalMs 0, naming the file, the variable or the flag it came from', () => {
    const file = configFile({ heartbeatIntervalMs: 0 });
    expect(() => loadConfig({ file, env: {} })).toThrow(`config file ${file}: heartbeatIntervalMs must be greater or equal to 1, got 0`);
    expect(() => loadConfig({ env: { MUSTER_HEARTBEAT_INTERVAL_MS: '0' } })).toThrow(/^bad configuration: MUSTER_HEARTBEAT_INTERVAL_MS: heartbeatIntervalMs/);
    expect(() => loadConfig({ env: {}, overrides: { heartbeatIntervalMs: 0 } })).toThrow(/--heartbeat-interval-ms: heartbeatIntervalMs/);
  });

  it('takes a ws:// or wss:// inspector URL, or none', () => {
    expect(loadConfig({ env: { MUSTER_INSPECT: 'ws://127.0.0.1:8080' } }).inspect).toBe('ws://127.0.0.1:8080');
    expect(loadConfig({ env: {}, overrides: { inspect: 'wss://inspect.example:443/x' } }).inspect).toBe('wss://inspect.example:443/x');
    expect(loadConfig({ env: {} }).inspect).toBe('');
    expect(() => loadConfig({ env: { MUSTER_INSPECT: 'http://127.0.0.1:8080' } })).toThrow(/MUSTER_INSPECT: inspect must match/);
  });

  it('checks ranges, not just types, and reports every bad setting at once', () => {
    const env = {
      MUSTER_MISSED_HEARTBEATS: '0',
      MUSTER_MAX_ATTEMPTS: '1000000000',
      MUSTER_LOG_LEVEL: 'loud',
      MUSTER_TCP: 'nonsense',
      MUSTER_HTTP: '127.0.0.1:70000',
      MUSTER_HEARTBEAT_INTERVAL_MS: '1.5',
      MUSTER_MAX_FRAME_BYTES: '10',
    };
    let error: ConfigError | undefined;
    try {
      loadConfig({ env });
    } catch (err) {
      error = err as ConfigError;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.problems.map((p) => [p.setting, p.source]).sort()).toEqual(
      [
        ['missedHeartbeats', 'MUSTER_MISSED_HEARTBEATS'],
        ['maxAttempts', 'MUSTER_MAX_ATTEMPTS'],
        ['logLevel', 'MUSTER_LOG_LEVEL'],
        ['tcp', 'MUSTER_TCP'],
        ['http', 'MUSTER_HTTP'],
        ['heartbeatIntervalMs', 'MUSTER_HEARTBEAT_INTERVAL_MS'],
        ['maxFrameBytes', 'MUSTER_MAX_FRAME_BYTES'],
      ].sort(),
    );
    expect(error!.message.split('\n')).toHaveLength(1);
  });

  it('checks rules between settings, blaming the one that breaks them', () => {
    expect(() => loadConfig({ env: { MUSTER_API_REQUEST_TIMEOUT_MS: '5000' }, overrides: { apiHeadersTimeoutMs: 6000 } })).toThrow(
      /MUSTER_API_REQUEST_TIMEOUT_MS: apiRequestTimeoutMs must be at least apiHeadersTimeoutMs \(6000\)/,
    );
    expect(() => loadConfig({ env: { MUSTER_TLS_CERT: '/etc/cert.pem' } })).toThrow(/the default: tlsKey tlsCert and tlsKey go together/);
    expect(() => loadConfig({ env: { MUSTER_MAX_HEARTBEAT_INTERVAL_MS: String(2 ** 30) } })).toThrow(
      /MUSTER_MAX_HEARTBEAT_INTERVAL_MS: maxHeartbeatIntervalMs times missedHeartbeats \+ 1 must stay within/,
    );
  });

  it('takes every default, every value at the ends of its range, and listeners on any host', () => {
    expect(() => loadConfig({ env: {} })).not.toThrow();
    const ends = { heartbeatIntervalMs: 1, missedHeartbeats: 100, maxAttempts: 100, revocationPollMs: 0, nodeMessageRate: 0 };
    expect(() => loadConfig({ env: {}, overrides: ends })).not.toThrow();
    for (const tcp of ['off', '0.0.0.0:0', '[::1]:7420', 'runner.example.test:65535', ':7420']) {
      expect(loadConfig({ env: {}, overrides: { tcp } }).tcp).toBe(tcp);
    }
  });

  it('stops `muster serve` with a bad setting before anything starts (no data directory made)', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'muster-config-')), 'data');
    const env = { PATH: process.env.PATH ?? '', MUSTER_HEARTBEAT_INTERVAL_MS: '0' };
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(MUSTER_BIN, ['serve', '--data-dir', dataDir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0'], { env }, (_err, _out, err) =>
        resolve({ code: child.exitCode, stderr: err }),
      );
    });
    expect(code).toBe(1);
    expect(stderr).toMatch(/^muster: bad configuration: MUSTER_HEARTBEAT_INTERVAL_MS: heartbeatIntervalMs must be greater or equal to 1, got 0/);
    expect(existsSync(dataDir)).toBe(false);
  }, 30_000);
});

describe('timeouts moved into the configuration reach the listeners', () => {
  it('tlsHandshakeTimeoutMs: a TLS client that never sends its ClientHello is dropped after it (Node alone leaves its TCP connection open)', async () => {
    const g = await startTlsPlane(SECRET, { tlsHandshakeTimeoutMs: 200, ws: 'off', grpc: 'off' });
    try {
      const socket = connect(tcpAddress(new URL(g.tlsUrl)));
      socket.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      // Nothing is sent: only the plane's handshake timeout can end this connection (the test's own limit is 5 s).
      await closed;
    } finally {
      await g.stop();
    }
  });
});

describe("the README's configuration table", () => {
  it('lists every setting with its MUSTER_* variable', () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Configuration\n'), readme.indexOf('\n## ', readme.indexOf('\n## Configuration\n') + 1));
    const rows = section.split('\n').filter((line) => line.startsWith('| `'));
    const missing = (Object.keys(DEFAULTS) as (keyof Config)[]).filter(
      (key) => !rows.some((row) => row.split(' | ')[0]!.includes(`\`${key}\``) && row.includes(`\`${envName(key)}\``)),
    );
    expect(missing).toEqual([]);
  });
});

describe('cluster-mode settings (issue 10)', () => {
  it('default to the embedded plane, with the lease renewed eight times a TTL', () => {
    const config = loadConfig({ env: {} });
    expect(config.nats).toBe('');
    expect([config.natsReplicas, config.leaseTtlMs, config.leaseRenewMs, config.natsRequestTimeoutMs]).toEqual([1, 5_000, 1_000, 2_000]);
  });

  it('reads the NATS servers from MUSTER_NATS_URL, and refuses a list that is not one of URLs', () => {
    expect(envName('nats')).toBe('MUSTER_NATS_URL');
    const urls = 'nats://h1:4222, tls://h2:4222,h3:4222,[::1]:4222';
    expect(loadConfig({ env: { MUSTER_NATS_URL: urls } }).nats).toBe(urls);
    expect(() => loadConfig({ env: { MUSTER_NATS_URL: 'nats://h1:4222,,nats://h2' } })).toThrow(/^bad configuration: MUSTER_NATS_URL: nats must/);
    expect(() => loadConfig({ env: { MUSTER_NATS_URL: 'nats://h1 h2' } })).toThrow(/MUSTER_NATS_URL: nats must/);
    // nats.js drops credentials in a URL without a word: refused, so that nobody believes they are used.
    expect(() => loadConfig({ env: { MUSTER_NATS_URL: 'nats://user:pass@h1:4222' } })).toThrow(/MUSTER_NATS_URL: nats must/);
  });

  it('refuses a renewal interval over a third of the lease TTL, blaming the renewal', () => {
    expect(() => loadConfig({ env: {}, overrides: { leaseRenewMs: 4_000 } })).toThrow(
      /--lease-renew-ms: leaseRenewMs must be at most a third of leaseTtlMs \(5000\)/,
    );
    expect(() => loadConfig({ env: { MUSTER_LEASE_TTL_MS: '2000' } })).toThrow(/the default: leaseRenewMs must be at most a third of leaseTtlMs \(2000\)/);
    expect(loadConfig({ env: {}, overrides: { leaseTtlMs: 3_000, leaseRenewMs: 1_000 } }).leaseRenewMs).toBe(1_000);
  });

  it('refuses two ways of authenticating to NATS, and a client certificate without its key', () => {
    expect(() => loadConfig({ env: {}, overrides: { natsCredsFile: '/etc/muster.creds', natsToken: 's3cret' } })).toThrow(
      /--nats-token: natsToken natsCredsFile, natsToken and natsNkeySeedFile are three ways/,
    );
    expect(() => loadConfig({ env: {}, overrides: { natsTlsCertFile: '/etc/nats-client.pem' } })).toThrow(
      /the default: natsTlsKeyFile natsTlsCertFile and natsTlsKeyFile go together/,
    );
    expect(() => loadConfig({ env: { MUSTER_NATS_REPLICAS: '7' } })).toThrow(/MUSTER_NATS_REPLICAS: natsReplicas must be less or equal to 5/);
  });

  it('takes every cluster flag of `muster serve`, naming it in its errors', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'muster-config-')), 'data');
    const args = ['serve', '--data-dir', dataDir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--control-plane-id', 'replica-a'];
    args.push('--nats', 'nats://127.0.0.1:4222', '--nats-creds', 'a.creds', '--nats-token', 't', '--nats-nkey-seed', 'seed');
    args.push('--nats-tls-ca', 'ca.pem', '--nats-tls-cert', 'c.pem', '--nats-tls-key', 'k.pem', '--nats-replicas', '9');
    args.push('--lease-ttl-ms', '10000', '--lease-renew-ms', '2000', '--nats-request-timeout-ms', '5');
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(MUSTER_BIN, args, { env: { PATH: process.env.PATH ?? '' } }, (_err, _out, err) => resolve({ code: child.exitCode, stderr: err }));
    });
    expect(code).toBe(1);
    // Range errors come first and alone: the two out of range, each named by its flag.
    expect(stderr).toContain('--nats-replicas: natsReplicas must be less or equal to 5, got 9');
    expect(stderr).toContain('--nats-request-timeout-ms: natsRequestTimeoutMs must be greater or equal to 10, got 5');
    expect(existsSync(dataDir)).toBe(false);
  }, 30_000);
});
