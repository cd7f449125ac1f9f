// The one place that chooses the stores from the configuration: `muster serve` (control-plane.ts)
// opens both seams here, the offline CLI (`muster token ...`) the token store alone.
// Only `sqlite` (the embedded plane: one file in the data directory) exists so far.
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { JobStore, OwnerToken } from './job-store.js';
import { storePath, type SqliteOptions } from './sqlite-database.js';
import { SqliteJobStore } from './sqlite-job-store.js';
import { SqliteTokenStore } from './sqlite-token-store.js';
import type { TokenStore } from './token-store.js';

/**
 * The owner token of every job write of the embedded plane: it is the only writer, so its
 * token never changes. A cluster writes with its lease revision instead, and a store refuses
 * the writes of a replica whose lease a newer one has taken.
 */
export const EMBEDDED_OWNER: OwnerToken = 1;

export interface Stores {
  jobs: JobStore;
  tokens: TokenStore;
  /** Closes both. */
  close(): Promise<void>;
}

/** Opens the plane's stores (creating them in a new data directory). */
export function openStores(config: Config, logger: Pick<Logger, 'warn'>): Stores {
  const path = storePath(chosen(config));
  // The plane checks the file once at start: a damaged store must not take jobs as if healthy.
  const jobs = SqliteJobStore.open(path, { ...sqliteOptions(config, config.storeCheckpointIntervalMs), integrityCheck: true }, logger);
  let tokens: TokenStore;
  try {
    // Its connection leaves checkpoints to the job store's worker too (it starts none itself).
    tokens = SqliteTokenStore.open(path, sqliteOptions(config, config.storeCheckpointIntervalMs));
  } catch (err) {
    void jobs.close();
    throw err;
  }
  return {
    jobs,
    tokens,
    close: async () => {
      await tokens.close();
      await jobs.close();
    },
  };
}

/**
 * The token store alone, for the CLI offline. `create` allows making it (first set-up);
 * without, a data directory that has no store is an error that says where it looked.
 */
export function openTokenStore(config: Config, create: boolean): TokenStore {
  const path = storePath(chosen(config));
  if (!create && !existsSync(path)) {
    throw new Error(`no control-plane store at ${path}: pass --data-dir, or --api to reach a running plane`);
  }
  // The CLI leaves checkpoints to SQLite: it may be the only process on the file.
  return SqliteTokenStore.open(path, sqliteOptions(config, 0));
}

/** The data directory of the configured backend; unknown backends are refused here. */
function chosen(config: Config): string {
  if (config.store !== 'sqlite') throw new Error(`unknown store ${config.store} (known: sqlite)`);
  return config.dataDir;
}

function sqliteOptions(config: Config, checkpointIntervalMs: number): SqliteOptions {
  return {
    busyTimeoutMs: config.storeBusyTimeoutMs,
    busyRetryMs: config.storeBusyRetryMs,
    busySliceMs: config.storeBusySliceMs,
    checkpointIntervalMs,
  };
}
