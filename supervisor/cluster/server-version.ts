// The nats-server version check for replicated buckets (issue 10 item 7): before 2.9.21,
// compare-and-set on a replicated (R3, R5) stream was not serialised (nats-server issue 4320),
// so two writers at one revision could both win. Every ownership, lease and job decision rests
// on that compare-and-set, so buckets that rely on it are refused replicas > 1 on such a
// server; R1 (one copy, on the server that takes the write) is always allowed.
import type { NatsConnection } from '@nats-io/nats-core';
import { MusterError } from '../../protocol/errors.js';

/** The first release whose replicated streams serialise expected-last-sequence writes. */
export const SERIALISED_CAS_SINCE = '2.9.21';

/** `major.minor.patch` of a server version string such as `2.9.10` or `v2.10.4-beta.1`. */
export function parseServerVersion(version: string): [number, number, number] {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  if (!match) throw new MusterError('internal', `unreadable nats-server version "${version}"`);
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

/** True when `version` is `min` or later. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = parseServerVersion(version);
  const b = parseServerVersion(min);
  for (let i = 0; i < 3; i++) {
    if (a[i] !== b[i]) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}

/** The version of the server the connection is on now (from its INFO). */
export function serverVersion(nc: Pick<NatsConnection, 'info'>): string {
  const version = nc.info?.version;
  if (version === undefined) throw new MusterError('internal', 'the NATS connection has no server INFO yet: not connected');
  return version;
}

/**
 * Throws unless `replicas` copies are safe for compare-and-set on this server: R1 always;
 * R3 and up only from SERIALISED_CAS_SINCE. `buckets` names what is refused, for the message.
 */
export function checkCasReplicas(version: string, replicas: number, buckets: readonly string[]): void {
  if (!Number.isInteger(replicas) || replicas < 1) {
    throw new MusterError('internal', `replicas must be a whole number of at least 1, got ${replicas}`);
  }
  if (replicas === 1 || versionAtLeast(version, SERIALISED_CAS_SINCE)) return;
  throw new MusterError(
    'internal',
    `nats-server ${version} does not serialise compare-and-set on replicated streams ` +
      `(nats-server issue 4320, fixed in ${SERIALISED_CAS_SINCE}): refusing replicas=${replicas} for ` +
      `${buckets.join(', ')}; use replicas=1 or upgrade the servers to ${SERIALISED_CAS_SINCE} or later`,
  );
}

/** `checkCasReplicas` against the server the connection is on. */
export function checkConnectionReplicas(
  nc: Pick<NatsConnection, 'info'>,
  replicas: number,
  buckets: readonly string[],
): void {
  checkCasReplicas(serverVersion(nc), replicas, buckets);
}
