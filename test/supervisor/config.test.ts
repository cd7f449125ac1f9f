// Settings come from defaults < config file < MUSTER_* variables < flags, with one table of defaults.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, envName, loadConfig } from '../../supervisor/config.js';

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
});
