// Until cluster mode is wired into the plane, a plane told of NATS refuses to start (naming the
// setting) rather than run as an embedded plane beside replicas it does not know of.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../supervisor/config.js';
import { startControlPlane } from '../../../supervisor/control-plane.js';

describe('cluster mode', () => {
  it('is refused, naming the setting and where it came from, while it is not wired', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'muster-cluster-mode-'));
    try {
      const config = loadConfig({
        env: { MUSTER_NATS_URL: 'nats://127.0.0.1:4222' },
        overrides: { dataDir, tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: 'off' },
      });
      const err = await startControlPlane(config, pino({ level: 'silent' })).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toContain('not wired');
      expect((err as ConfigError).problems).toEqual([{ setting: 'nats', source: 'MUSTER_NATS_URL', problem: 'cluster mode is not available yet' }]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
