// Small helpers shared by the lease and ownership buckets: opening a KV bucket whose
// compare-and-set the cluster relies on (a lost compare-and-set: jetstream-errors.ts).
import type { NatsConnection } from '@nats-io/nats-core';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import { MusterError } from '../../protocol/errors.js';
import { isWrongLast } from './jetstream-errors.js';
import { checkConnectionReplicas } from './server-version.js';

export interface CasBucketOptions {
  /** The bucket's name (its stream is `KV_<bucket>`). */
  bucket: string;
  /** Copies; refused above 1 on servers before 2.9.21 (server-version.ts). */
  replicas: number;
  /** The bucket's `max_age` in ms (0: entries never age out). Must match an existing bucket's. */
  ttlMs: number;
}

/**
 * Opens (creating when missing) a bucket with one value per key. Reads go to the stream leader
 * (`allow_direct: false`): a direct get may be served by a lagging replica, and a read that
 * misses a newer lease would make a live owner look gone.
 */
export async function openCasBucket(nc: NatsConnection, options: CasBucketOptions): Promise<KV> {
  checkConnectionReplicas(nc, options.replicas, [options.bucket]);
  const kv = await new Kvm(nc).create(options.bucket, {
    history: 1,
    replicas: options.replicas,
    ttl: options.ttlMs,
    allow_direct: false,
  });
  const status = await kv.status();
  checkConnectionReplicas(nc, status.replicas, [options.bucket]);
  if (status.ttl !== options.ttlMs) throw ttlMismatch(options.bucket, status.ttl, options.ttlMs);
  return kv;
}

/** What to do about a bucket whose `max_age` is not this replica's: the lease TTL differs, or someone changed a bucket that keeps its entries. */
function ttlMismatch(bucket: string, actualMs: number, expectedMs: number): MusterError {
  if (expectedMs === 0) {
    return new MusterError('internal', `KV bucket ${bucket} ages entries out after ${actualMs} ms, where Muster keeps them: its max_age was changed outside Muster; set it back to 0`);
  }
  return new MusterError(
    'internal',
    `KV bucket ${bucket} ages entries out after ${actualMs} ms, this replica expects ${expectedMs} ms: every replica must use ` +
      `the same lease TTL. Start this one with --lease-ttl-ms ${actualMs} (MUSTER_LEASE_TTL_MS) to join the replicas of that TTL, ` +
      `or, to change it, stop every replica and remove the bucket (nats kv rm ${bucket}; it holds only the live leases)`,
  );
}

/** The characters a KV key may have (nats.js validates keys against this, dots as separators). */
export const KV_KEY = /^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$/;

export function isKvKey(key: string): boolean {
  return KV_KEY.test(key);
}


/** The entry's JSON value when it is a live (PUT) entry that parses to an object, else undefined. */
export function liveValue(entry: KvEntry | null | undefined): Record<string, unknown> | undefined {
  if (!entry || entry.operation !== 'PUT') return undefined;
  try {
    const value: unknown = entry.json();
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Creates `key` unless it is there: its revision, or undefined when it already was. */
export async function createOnce(kv: KV, key: string, value: Uint8Array | string): Promise<number | undefined> {
  try {
    return await kv.create(key, value);
  } catch (err) {
    if (isWrongLast(err)) return undefined;
    throw err;
  }
}

/** Writes `key` only while it is at `revision`: the new revision, or undefined when another writer changed it first. */
export async function updateAt(kv: KV, key: string, value: Uint8Array | string, revision: number): Promise<number | undefined> {
  try {
    return await kv.update(key, value, revision);
  } catch (err) {
    if (isWrongLast(err)) return undefined;
    throw err;
  }
}
