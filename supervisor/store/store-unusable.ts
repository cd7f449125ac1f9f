// A store that no restart will make usable: the SQLite file damaged, not a database or on a
// read-only disk (sqlite-database.ts), or a cluster's data on NATS stored under another cluster
// format (cluster/format-guard.ts). Such a refusal carries a StoreUnusable cause, and `muster
// serve` then exits with its own status, which the systemd units name in RestartPreventExitStatus.

/** The exit status of `muster serve` when its store cannot be used: a restart cannot help (deploy/muster.service). */
export const EXIT_STORE_UNUSABLE = 65;

/** The cause of a MusterError whose store cannot be used as it is. */
export class StoreUnusable extends Error {
  override readonly name = 'StoreUnusable';
}

/** True when `err` (or an error it was caused by) says the store cannot be used as it is. */
export function isStoreUnusable(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) if (e instanceof StoreUnusable) return true;
  return false;
}
