// The AES-256-GCM frame cipher of PROTOCOL.md section 6: the body layout any client must
// produce, authentication of every bit and of the codec byte, nonces that do not repeat, the
// refusal once a cipher's nonces are used up, and the key file format.
import { createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MusterError } from '../../protocol/errors.js';
import {
  ENCRYPTION_OVERHEAD_BYTES,
  loadEncryptionKey,
  NONCE_BYTES,
  parseEncryptionKey,
  PayloadCipher,
  TAG_BYTES,
} from '../../transports/payload-cipher.js';

const KEY = randomBytes(32);
const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const PLAINTEXT = Buffer.from('{"type":"Heartbeat","data":{"node_id":"n-1"}}');

function expectDecryptFailed(fn: () => unknown): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(MusterError);
  expect((thrown as MusterError).code).toBe('decrypt_failed');
  expect((thrown as MusterError).fatal).toBe(true);
}

describe('PayloadCipher', () => {
  it('round-trips under the same key, between two independent ciphers', () => {
    const sender = new PayloadCipher(KEY);
    const receiver = new PayloadCipher(KEY);
    for (const codec of [0x81, 0x82]) {
      const body = sender.encrypt(codec, PLAINTEXT);
      expect(body.length).toBe(PLAINTEXT.length + ENCRYPTION_OVERHEAD_BYTES);
      expect(receiver.decrypt(codec, body)).toEqual(PLAINTEXT);
    }
    expect(receiver.decrypt(0x82, sender.encrypt(0x82, new Uint8Array(0)))).toEqual(Buffer.alloc(0));
  });

  it('writes nonce | ciphertext | tag with the codec byte as AAD, as any other client would read it', () => {
    const body = new PayloadCipher(KEY).encrypt(0x81, PLAINTEXT);
    const decipher = createDecipheriv('aes-256-gcm', KEY, body.subarray(0, NONCE_BYTES));
    decipher.setAAD(Buffer.of(0x81));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(body.subarray(NONCE_BYTES, body.length - TAG_BYTES)), decipher.final()]);
    expect(plain).toEqual(PLAINTEXT);
  });

  it('sets 0x80 in the AAD whether the caller passes the plain or the wire codec byte', () => {
    const cipher = new PayloadCipher(KEY);
    expect(cipher.decrypt(0x82, cipher.encrypt(0x02, PLAINTEXT))).toEqual(PLAINTEXT);
  });

  it('refuses a body with any one bit flipped, in the nonce, the ciphertext or the tag', () => {
    const cipher = new PayloadCipher(KEY);
    const body = cipher.encrypt(0x82, PLAINTEXT);
    for (let bit = 0; bit < body.length * 8; bit++) {
      const tampered = Buffer.from(body);
      tampered[bit >> 3]! ^= 1 << (bit & 7);
      expectDecryptFailed(() => cipher.decrypt(0x82, tampered));
    }
    expect(cipher.decrypt(0x82, body)).toEqual(PLAINTEXT);
  });

  it('refuses a body under another codec byte (the AAD), another key, or too short to hold nonce and tag', () => {
    const cipher = new PayloadCipher(KEY);
    const body = cipher.encrypt(0x82, PLAINTEXT);
    expectDecryptFailed(() => cipher.decrypt(0x81, body));
    expectDecryptFailed(() => new PayloadCipher(randomBytes(32)).decrypt(0x82, body));
    expectDecryptFailed(() => cipher.decrypt(0x82, body.subarray(0, ENCRYPTION_OVERHEAD_BYTES - 1)));
    expectDecryptFailed(() => cipher.decrypt(0x82, new Uint8Array(0)));
    // The smallest valid body: an empty plaintext is nonce and tag only.
    expect(cipher.decrypt(0x82, cipher.encrypt(0x82, new Uint8Array(0)))).toEqual(Buffer.alloc(0));
  });

  it('never reuses a nonce: one cipher counts up, and two ciphers start apart', () => {
    const a = new PayloadCipher(KEY);
    const b = new PayloadCipher(KEY);
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      for (const cipher of [a, b]) seen.add(cipher.encrypt(0x82, PLAINTEXT).subarray(0, NONCE_BYTES).toString('hex'));
    }
    expect(seen.size).toBe(40_000);
    expect(a.encryptions).toBe(20_000);
  });

  it('counts the nonce as one 96-bit number, carrying across every byte', () => {
    const cipher = new PayloadCipher(KEY, { firstNonce: Buffer.from('00ffffffffffffffffffffff', 'hex') });
    const nonces = [0, 1].map(() => cipher.encrypt(0x81, PLAINTEXT).subarray(0, NONCE_BYTES).toString('hex'));
    expect(nonces).toEqual(['00ffffffffffffffffffffff', '010000000000000000000000']);
  });

  it('refuses to encrypt once its nonces are used up, and does not spend one doing so', () => {
    const cipher = new PayloadCipher(KEY, { maxEncryptions: 3 });
    for (let i = 0; i < 3; i++) cipher.encrypt(0x82, PLAINTEXT);
    expect(() => cipher.encrypt(0x82, PLAINTEXT)).toThrow(/encrypted 3 frames/);
    expect(() => cipher.encrypt(0x82, PLAINTEXT)).toThrow(/encrypted 3 frames/);
    expect(cipher.encryptions).toBe(3);
    // Decrypting is not limited: the peer's nonces are the peer's.
    expect(cipher.decrypt(0x82, new PayloadCipher(KEY).encrypt(0x82, PLAINTEXT))).toEqual(PLAINTEXT);
  });

  it('takes only 32-byte keys', () => {
    expect(() => new PayloadCipher(randomBytes(16))).toThrow(/32 bytes/);
    expect(() => new PayloadCipher(randomBytes(33))).toThrow(/32 bytes/);
  });
});

describe('loadEncryptionKey', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-key-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function keyFile(name: string, content: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
  }

  it('reads 44 base64 characters, ignoring surrounding whitespace, as the key the cipher uses', () => {
    const text = KEY.toString('base64');
    const key = loadEncryptionKey(keyFile('good', `\n  ${text}\r\n\n`));
    expect(key.symmetricKeySize).toBe(32);
    expect(key.export()).toEqual(KEY);
    // Interoperates with a cipher made from the raw bytes.
    expect(new PayloadCipher(key).decrypt(0x81, new PayloadCipher(KEY).encrypt(0x81, PLAINTEXT))).toEqual(PLAINTEXT);
  });

  it('refuses anything else with an error that names the file and never shows its content', () => {
    const good = KEY.toString('base64');
    const bad: Record<string, string> = {
      empty: '',
      short: randomBytes(31).toString('base64'),
      long: randomBytes(33).toString('base64'),
      raw: KEY.toString('hex'),
      'base64url-alphabet': `${good.slice(0, 42).replace(/[A-Za-z0-9]/, '-')}${good.slice(42)}`,
      'no-padding': good.slice(0, 43),
      'inner-space': `${good.slice(0, 20)} ${good.slice(20)}`,
      'two-keys': `${good}\n${good}`,
      // The last character carries 4 bits of key and 2 spare bits that must be zero.
      'non-canonical': `${good.slice(0, 42)}${BASE64[BASE64.indexOf(good[42]!) | 1]}=`,
    };
    for (const [name, content] of Object.entries(bad)) {
      const file = keyFile(name, content);
      let message = '';
      try {
        loadEncryptionKey(file);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, name).toContain(file);
      expect(message, name).toMatch(/32 bytes base64-encoded \(44 characters\)/);
      if (content.length > 4) expect(message, name).not.toContain(content.trim().slice(0, 16));
    }
  });

  it('names a file that cannot be read', () => {
    const missing = path.join(dir, 'missing');
    expect(() => loadEncryptionKey(missing)).toThrow(`cannot read encryption key file ${missing}`);
  });

  it('parses a key from text for callers that hold no file', () => {
    expect(parseEncryptionKey(` ${KEY.toString('base64')} `, 'MUSTER_TEST').export()).toEqual(KEY);
    expect(() => parseEncryptionKey('x', 'MUSTER_TEST')).toThrow(/^MUSTER_TEST must hold 32 bytes/);
  });
});
