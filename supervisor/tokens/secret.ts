// The HS256 signing secret: from MUSTER_JWT_SECRET / configuration, else kept in `<dataDir>/secret`.
// The file holds base64url text and its UTF-8 bytes are the key, so `MUSTER_JWT_SECRET=$(cat .muster/secret)`
// on another replica yields the very same key.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';

/** Shortest secret accepted, in bytes (PROTOCOL.md section 5). */
export const MIN_SECRET_BYTES = 32;

const SECRET_FILE = 'secret';
const GENERATED_BYTES = 32;

/**
 * The secret the control plane signs and verifies tokens with. A non-empty `config.jwtSecret`
 * wins and must be at least 32 bytes of UTF-8; otherwise `<dataDir>/secret` is read, or created
 * once (mode 0600) when missing. Two processes starting together end up with the same secret.
 */
export function loadSecret(config: Config): Uint8Array {
  if (config.jwtSecret !== '') return checked(config.jwtSecret, 'MUSTER_JWT_SECRET (jwtSecret)');
  return secretFromDataDir(config.dataDir) ?? createSecret(config.dataDir);
}

/** The secret stored in `<dataDir>/secret`, or undefined when there is none. Never writes. */
export function secretFromDataDir(dataDir: string): Uint8Array | undefined {
  const path = join(dataDir, SECRET_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
  return checked(text.trim(), path);
}

function checked(text: string, origin: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  // The secret itself never goes into the message.
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new Error(`${origin} must be at least ${MIN_SECRET_BYTES} bytes, got ${bytes.length}`);
  }
  return bytes;
}

/**
 * Writes the new secret to a private temp file, then publishes it with link(2), which fails
 * with EEXIST rather than replace a file: a reader never sees a half-written secret, and of two
 * processes racing, the loser re-reads the winner's.
 */
function createSecret(dataDir: string): Uint8Array {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SECRET_FILE);
  const tmp = join(dataDir, `.${SECRET_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${randomBytes(GENERATED_BYTES).toString('base64url')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
  } finally {
    unlinkSync(tmp);
  }
  const secret = secretFromDataDir(dataDir);
  if (secret === undefined) throw new Error(`${path} vanished right after it was written`);
  return secret;
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
