// The guard against mixing releases in one cluster (cluster-format.ts says what a format is). A
// replica checks twice at start, after taking its lease and before it opens the job store,
// claims a node or writes a job:
//
// - The live leases: a peer whose lease announces another format, or none (a build from before
//   formats), refuses this start. Read after this replica's own lease is written, so that of two
//   replicas of different formats starting at once, the later reader sees the other: at least
//   one refuses (a build from before formats checks nothing, hence the report of peers that
//   appear later: replica-duties.ts).
// - The stored format: one key, `format`, in a KV bucket of its own, `muster-cluster` (history 1,
//   no TTL), written with `create` by the first replica that starts on the NATS and never
//   rewritten: it outlives every replica, so a replica started on data of another format refuses
//   even when no replica is live. One stamp for the cluster is enough because a replica only runs
//   on data whose stamp it matches: everything written under a stamp is of that format. Not a key
//   in `muster-leases` (its entries age out) nor in `muster-owners` (its keys are node ids). Data
//   written by builds from before the stamp carries no mark, so the first replica of a guarded
//   build adopts it as its own format: nothing in it says otherwise, and a build of before that
//   is still running was refused by the lease check. The stamp goes when the operator removes the
//   cluster's streams, which is also how data of a format this build cannot read goes.
import type { NatsConnection } from '@nats-io/nats-core';
import { MusterError } from '../../protocol/errors.js';
import { StoreUnusable } from '../store/store-unusable.js';
import { createOnce, liveValue, openCasBucket } from './kv-cas.js';
import type { PeerLease } from './lease-peers.js';

export const CLUSTER_BUCKET = 'muster-cluster';
export const FORMAT_KEY = 'format';

/** The stored value of `muster-cluster` `format`. */
export interface StoredFormat {
  format: number;
  /** Muster's version of the replica that wrote it. */
  version: string;
  replica_id: string;
  written_at: string;
}

/** The replica that checks: its id, Muster's version and its cluster format. */
export interface FormatSelf {
  replicaId: string;
  version: string;
  format: number;
}

const formatOf = (format: number | undefined): string => (format === undefined ? 'none (a build from before cluster formats)' : String(format));
const muster = (version: string): string => (version === '' ? 'muster of unknown version' : `muster ${version}`);

/**
 * Refuses (internal) when a live peer's lease announces another cluster format than `self`'s;
 * `ttlMs`, the leases' TTL, says how long the lease of a peer killed rather than stopped stays.
 */
export function checkPeerFormats(leases: readonly PeerLease[], self: FormatSelf, ttlMs: number): void {
  const peer = leases.find((p) => p.id !== self.replicaId && p.format !== self.format);
  if (peer === undefined) return;
  const older = peer.format === undefined || peer.format < self.format;
  const todo = older
    ? `stop replica ${peer.id} and every other replica of the older build before starting this one, or upgrade all replicas at once (stop all, then start all on ${muster(self.version)})`
    : `this build is older than the cluster's: run ${muster(peer.version)} here too, or upgrade all replicas at once (stop all, then start all on one build)`;
  throw new MusterError(
    'internal',
    `replica ${peer.id} (${muster(peer.version)}) is live with cluster format ${formatOf(peer.format)}, ` +
      `this replica ${self.replicaId} (${muster(self.version)}) has cluster format ${self.format}: ` +
      `replicas of different formats misread each other's jobs, leases and events, so this one does not start; ${todo} ` +
      `(the lease of a replica killed rather than stopped stays up to ${ttlMs} ms)`,
  );
}

/**
 * Stamps the NATS with `self`'s format when nothing is stamped yet ('stamped'), passes when the
 * stamp is `self`'s ('matched'), refuses (internal) when the data is of another format.
 */
export async function checkStoredFormat(nc: NatsConnection, self: FormatSelf, options: { replicas: number; bucket?: string }): Promise<'stamped' | 'matched'> {
  const bucket = options.bucket ?? CLUSTER_BUCKET;
  const kv = await openCasBucket(nc, { bucket, replicas: options.replicas, ttlMs: 0 });
  const stamp: StoredFormat = { format: self.format, version: self.version, replica_id: self.replicaId, written_at: new Date().toISOString() };
  if ((await createOnce(kv, FORMAT_KEY, JSON.stringify(stamp))) !== undefined) return 'stamped';
  const value = liveValue(await kv.get(FORMAT_KEY));
  const format = typeof value?.format === 'number' ? value.format : undefined;
  if (format === self.format) return 'matched';
  const writer = value === undefined ? '' : `, written by ${muster(String(value.version ?? ''))} (replica ${String(value.replica_id ?? '?')}, ${String(value.written_at ?? '?')})`;
  throw new MusterError(
    'internal',
    `the cluster data on this NATS is of cluster format ${format ?? 'unreadable'} (KV ${bucket} key ${FORMAT_KEY}${writer}), ` +
      `this replica ${self.replicaId} (${muster(self.version)}) has cluster format ${self.format} and would misread it, so it does not start: ` +
      `run replicas of the build that wrote it, or, to start afresh and lose its jobs, tokens and artifacts, ` +
      `remove every Muster stream (nats stream ls: KV_muster-*, OBJ_muster-*, MUSTER_*) before starting this build`,
    // No restart of this build will read it: `muster serve` exits with the status a supervisor does not restart on.
    { cause: new StoreUnusable(`cluster data of format ${format ?? 'unreadable'}`) },
  );
}
