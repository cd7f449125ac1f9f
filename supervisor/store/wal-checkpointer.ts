// WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the commit that
// crosses its threshold and copies pages and fsyncs the database file there, which made a store
// write take milliseconds now and then (the job round trip's p99). The plane turns it off
// (`wal_autocheckpoint=0`) and checkpoints instead from a worker thread with its own connection,
// on a timer, in PASSIVE mode: it never takes the write lock, so writers are never held up.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';

// Plain CommonJS evaluated in the worker: no TypeScript loader is needed there.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 0');
const timer = setInterval(() => {
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ kind: 'checkpoint', ...row });
  } catch (err) {
    parentPort.postMessage({ kind: 'error', message: String(err && err.message || err) });
  }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export interface CheckpointReport {
  /** Frames in the WAL and frames copied into the database file by the last checkpoint. */
  log: number;
  checkpointed: number;
}

export class WalCheckpointer {
  readonly #worker: Worker;
  readonly #exited: Promise<void>;
  #last: CheckpointReport | undefined;
  #waiters: Array<(report: CheckpointReport) => void> = [];

  /** Checkpoints the file at `path` every `intervalMs` until `close()`. */
  constructor(path: string, intervalMs: number, logger: Pick<Logger, 'warn'>) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, path, intervalMs } });
    this.#worker.on('message', (m: { kind: string; message?: string; log?: number; checkpointed?: number }) => {
      if (m.kind === 'error') logger.warn({ err: m.message, path }, 'WAL checkpoint failed');
      else this.#reported({ log: m.log ?? 0, checkpointed: m.checkpointed ?? 0 });
    });
    this.#worker.on('error', (err) => logger.warn({ err, path }, 'WAL checkpointer stopped'));
    // The timer alone must not keep a process alive.
    this.#worker.unref();
    this.#exited = new Promise((resolve) => this.#worker.once('exit', () => resolve()));
  }

  /** What the last checkpoint did, if one ran. */
  get last(): CheckpointReport | undefined {
    return this.#last;
  }

  /** Resolves with the report of the next checkpoint. */
  next(): Promise<CheckpointReport> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #reported(report: CheckpointReport): void {
    this.#last = report;
    for (const wake of this.#waiters.splice(0)) wake(report);
  }

  async close(): Promise<void> {
    // Held until it has exited: waiting on an unref'd worker alone would let the process end mid-close.
    this.#worker.ref();
    this.#worker.postMessage('stop');
    await this.#exited;
  }
}
