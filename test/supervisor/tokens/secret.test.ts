import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULTS } from '../../../supervisor/config.js';
import type { Config } from '../../../supervisor/config.js';
import { loadSecret, secretFromDataDir } from '../../../supervisor/tokens/secret.js';

const run = promisify(execFile);
let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'muster-secret-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function config(overrides: Partial<Config>): Config {
  return { ...DEFAULTS, ...overrides };
}

describe('loadSecret', () => {
  it('generates the secret once in a nested data dir and reuses it', () => {
    const dataDir = join(root, 'a', 'b');
    const first = loadSecret(config({ dataDir }));
    const second = loadSecret(config({ dataDir }));
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
    expect(Buffer.from(secretFromDataDir(dataDir) ?? []).equals(Buffer.from(first))).toBe(true);
    // base64url text of 32 random bytes; no temp files left behind.
    expect(readFileSync(join(dataDir, 'secret'), 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(readdirSync(dataDir)).toEqual(['secret']);
  });

  it('creates the secret file with mode 0600', () => {
    loadSecret(config({ dataDir: root }));
    expect(statSync(join(root, 'secret')).mode & 0o777).toBe(0o600);
  });

  it('gives different data dirs different secrets', () => {
    const a = loadSecret(config({ dataDir: join(root, 'a') }));
    const b = loadSecret(config({ dataDir: join(root, 'b') }));
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('uses the configured secret and writes nothing', () => {
    const secret = 'x'.repeat(32);
    expect(new TextDecoder().decode(loadSecret(config({ dataDir: root, jwtSecret: secret })))).toBe(secret);
    expect(secretFromDataDir(root)).toBeUndefined();
  });

  it('refuses a configured secret shorter than 32 bytes without echoing it', () => {
    const short = 'short-secret-31-bytes-long-abcd';
    expect(short.length).toBe(31);
    expect(() => loadSecret(config({ dataDir: root, jwtSecret: short }))).toThrow(/at least 32 bytes/);
    try {
      loadSecret(config({ dataDir: root, jwtSecret: short }));
    } catch (err) {
      expect(String(err)).not.toContain(short);
    }
  });

  it('counts UTF-8 bytes, not characters', () => {
    // 16 characters, 32 bytes.
    expect(loadSecret(config({ dataDir: root, jwtSecret: 'é'.repeat(16) })).length).toBe(32);
  });

  it('refuses a secret file that is too short', () => {
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'secret'), 'tiny\n');
    expect(() => loadSecret(config({ dataDir: root }))).toThrow(/at least 32 bytes/);
  });

  it('agrees on one secret when several processes start together', async () => {
    const dataDir = join(root, 'race');
    const script = [
      "import { loadSecret } from './supervisor/tokens/secret.ts';",
      "import { DEFAULTS } from './supervisor/config.ts';",
      `process.stdout.write(Buffer.from(loadSecret({ ...DEFAULTS, dataDir: ${JSON.stringify(dataDir)} })).toString('hex'));`,
    ].join('\n');
    const runs = Array.from({ length: 4 }, () =>
      run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd() }),
    );
    const outputs = (await Promise.all(runs)).map((r) => r.stdout);
    expect(outputs[0]).toMatch(/^[0-9a-f]{64,}$/);
    expect(new Set(outputs).size).toBe(1);
  });
});

describe('secretFromDataDir', () => {
  it('returns undefined and creates nothing when there is no secret', () => {
    const dataDir = join(root, 'missing');
    expect(secretFromDataDir(dataDir)).toBeUndefined();
    expect(() => statSync(dataDir)).toThrow();
  });
});
