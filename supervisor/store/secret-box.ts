// Job secrets at rest: `execution_context.secrets` is kept in the store sealed with AES-256-GCM,
// under a key kept beside the JWT secret in the data directory (`store.key`, mode 0600). The
// job's id is the additional data, so a sealed value moved to another job does not open.
// Values are opened only to send a `JobAssignment` (JobStore.secrets); records never carry them.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MusterError } from '../../protocol/errors.js';

const KEY_FILE = 'store.key';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Sealed text: `v1.` then base64 of iv ‖ tag ‖ ciphertext. */
const VERSION = 'v1.';

/** What a record shows for the value of each secret: its names are kept, never its values. */
export const SEALED_VALUE = '***';

export class SecretBox {
  readonly #key: Buffer;

  private constructor(key: Buffer) {
    this.#key = key;
  }

  /** A box on a key given whole (32 bytes): a cluster's replicas share one, so each opens what another sealed. */
  static fromKey(key: Uint8Array): SecretBox {
    if (key.length !== KEY_BYTES) throw new MusterError('internal', `a job secrets key must be ${KEY_BYTES} bytes`);
    return new SecretBox(Buffer.from(key));
  }

  /** The key of the store file at `dbPath` (created once, 0600, beside it); a throwaway one in memory. */
  static forStore(dbPath: string): SecretBox {
    if (dbPath === ':memory:' || dbPath === '') return new SecretBox(randomBytes(KEY_BYTES));
    const path = join(dirname(dbPath), KEY_FILE);
    return new SecretBox(readKey(path) ?? createKey(path));
  }

  seal(plaintext: string, aad: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return VERSION + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  open(sealed: string, aad: string): string {
    if (!sealed.startsWith(VERSION)) throw new MusterError('internal', 'sealed job secrets of an unknown version');
    const bytes = Buffer.from(sealed.slice(VERSION.length), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, bytes.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch (err) {
      // A changed store.key or a tampered row: say which, not what the bytes were.
      throw new MusterError('internal', 'job secrets do not open with this store.key', { cause: err });
    }
  }
}

function readKey(path: string): Buffer | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== KEY_BYTES) throw new Error(`${path} must hold ${KEY_BYTES} bytes, base64`);
  return key;
}

/**
 * Written to a private temp file and published with link(2), as the JWT secret is
 * (tokens/secret.ts): of two processes racing, the loser reads the winner's key.
 */
function createKey(path: string): Buffer {
  const key = randomBytes(KEY_BYTES);
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${key.toString('base64')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readKey(path) as Buffer;
  } finally {
    unlinkSync(tmp);
  }
}
