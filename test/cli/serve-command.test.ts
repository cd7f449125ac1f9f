// `muster serve`'s flags reach their settings: each cluster flag sets its config key, and a bad
// value is blamed on the flag as the user typed it (`--nats-creds`, not `--nats-creds-file`).
import { expect, it } from 'vitest';
import { serveCommand, serveOverrides, type ServeOptions } from '../../cli/serve-command.js';
import { loadConfig, sourceOf, type Config } from '../../supervisor/config.js';

const FLAGS: [flag: string, value: string, key: keyof Config, expected: string | number][] = [
  ['--control-plane-id', 'replica-a', 'controlPlaneId', 'replica-a'],
  ['--nats', 'nats://127.0.0.1:4222,nats://127.0.0.1:4223', 'nats', 'nats://127.0.0.1:4222,nats://127.0.0.1:4223'],
  ['--nats-creds', '/etc/muster/nats.creds', 'natsCredsFile', '/etc/muster/nats.creds'],
  ['--nats-token', 's3cret', 'natsToken', 's3cret'],
  ['--nats-nkey-seed', '/etc/muster/nkey.seed', 'natsNkeySeedFile', '/etc/muster/nkey.seed'],
  ['--nats-tls-ca', '/etc/muster/ca.pem', 'natsTlsCaFile', '/etc/muster/ca.pem'],
  ['--nats-tls-cert', '/etc/muster/client.pem', 'natsTlsCertFile', '/etc/muster/client.pem'],
  ['--nats-tls-key', '/etc/muster/client-key.pem', 'natsTlsKeyFile', '/etc/muster/client-key.pem'],
  ['--nats-replicas', '3', 'natsReplicas', 3],
  ['--lease-ttl-ms', '15000', 'leaseTtlMs', 15_000],
  ['--lease-renew-ms', '3000', 'leaseRenewMs', 3_000],
  ['--nats-request-timeout-ms', '750', 'natsRequestTimeoutMs', 750],
];

it('sets each cluster setting from its flag, and names the flag as its source', () => {
  const command = serveCommand();
  command.parseOptions(FLAGS.flatMap(([flag, value]) => [flag, value]));
  const config = loadConfig({ env: {}, overrides: serveOverrides(command.opts<ServeOptions>()) });
  for (const [flag, , key, expected] of FLAGS) {
    expect(config[key], flag).toBe(expected);
    expect(sourceOf(config, key), key).toBe(flag);
  }
});
