// Where EdDSA / ES256 verification keys come from: a JWKS file, or a JWKS URL on the operator's
// network. A file is read at start and read again when a token names a key it lacks and the file
// has changed since, so a new key can be added before tokens signed with it appear (rotation
// without a restart); a URL is fetched and cached by jose, which refetches on an unknown `kid`.
import { readFileSync, statSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, errors, type JSONWebKeySet } from 'jose';
import type { JwksResolver } from './token-keys.js';

export interface JwksOptions {
  /** How long one fetch of a JWKS URL may take. */
  timeoutMs: number;
}

/** A resolver for `location`: an `http(s)://` URL, else a file path. */
export function openJwks(location: string, options: JwksOptions): JwksResolver {
  if (/^https?:\/\//i.test(location)) {
    return createRemoteJWKSet(new URL(location), { timeoutDuration: options.timeoutMs });
  }
  return fileJwks(location);
}

interface LoadedSet {
  mtimeMs: number;
  resolve: JwksResolver;
}

function fileJwks(path: string): JwksResolver {
  let loaded = loadFile(path);
  return async (header, token) => {
    try {
      return await loaded.resolve(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey) || !changedSince(path, loaded.mtimeMs)) throw err;
      try {
        loaded = loadFile(path);
      } catch {
        // Caught half-written: keep the set we have, and refuse this token.
        throw err;
      }
      return loaded.resolve(header, token);
    }
  };
}

function loadFile(path: string): LoadedSet {
  const mtimeMs = statSync(path).mtimeMs;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`JWKS file ${path} is not JSON`, { cause: err });
  }
  try {
    // createLocalJWKSet checks the shape; it refuses private and secret keys when a key is used.
    return { mtimeMs, resolve: createLocalJWKSet(parsed as JSONWebKeySet) };
  } catch (err) {
    throw new Error(`JWKS file ${path} is not a JSON Web Key Set`, { cause: err });
  }
}

function changedSince(path: string, mtimeMs: number): boolean {
  try {
    return statSync(path).mtimeMs !== mtimeMs;
  } catch {
    return false;
  }
}
