// Loaded into the plane by `npm run bench` with BENCH_ROUND_TRIP_TRACE=1 (`node --import tsx
// --import this-file`): where the plane's time went, each moment stamped on the wall clock
// (epoch ms, as the bench client stamps its round trips), written as JSON to $MUSTER_PROBE_OUT
// when the plane exits. Nothing in the plane knows of it: the store's commits and the WAL's
// fsyncs are timed by wrapping better-sqlite3's `Statement.run` and FileHandle's `datasync`.
//   gc      every collection (PerformanceObserver), with its kind
//   commit  BEGIN IMMEDIATE → COMMIT of a group commit, on the event loop (its prepared statements)
//   fsync   the WAL's fdatasync, from its call to its answer (thread pool and disk)
//   stall   the event loop late by over STALL_MS for a 1 ms timer (anything that kept it busy)
// The 1 ms timer itself costs the plane a little CPU: figures taken so are for finding causes.
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';
import { watchGc } from './gc-watch.js';

export type ProbeKind = 'gc' | 'commit' | 'fsync' | 'stall';

/** One stamped stretch of the plane's time: what, from when (epoch ms), how long (ms), and detail (a GC's kind). */
export type ProbeEvent = [kind: ProbeKind, startMs: number, durationMs: number, detail?: number];

export interface ProbeFile {
  events: ProbeEvent[];
  /** The event loop's delay over the plane's life (monitorEventLoopDelay), ms. */
  loopDelay: { p50: number; p99: number; max: number };
}

const STALL_MS = 1.5;
const out = process.env.MUSTER_PROBE_OUT;
const events: ProbeEvent[] = [];
const wall = (): number => performance.timeOrigin + performance.now();

if (out !== undefined && out !== '') {
  watchGc(([startMs, durationMs, kind]) => events.push(['gc', startMs, durationMs, kind]));
  timeCommits();
  await timeFsyncs();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let last = wall();
  setInterval(() => {
    const now = wall();
    if (now - last > 1 + STALL_MS) events.push(['stall', last, now - last]);
    last = now;
  }, 1).unref();
  process.on('exit', () => {
    const loopDelay = { p50: delay.percentile(50) / 1e6, p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 };
    writeFileSync(out, JSON.stringify({ events, loopDelay } satisfies ProbeFile));
  });
}

/**
 * A group commit runs `BEGIN IMMEDIATE` … `COMMIT` on its connection (store/group-commit.ts), as
 * statements it prepared once; every statement shares one prototype, reached through a throwaway
 * in-memory database.
 */
function timeCommits(): void {
  const Sqlite = createRequire(import.meta.url)('better-sqlite3') as typeof Database;
  const scratch = new Sqlite(':memory:');
  const prototype = Object.getPrototypeOf(scratch.prepare('SELECT 1')) as Database.Statement;
  scratch.close();
  const run = prototype.run;
  let began = 0;
  prototype.run = function (this: Database.Statement, ...params: unknown[]) {
    if (this.source === 'BEGIN IMMEDIATE') began = wall();
    const result = run.apply(this, params as []);
    if (this.source === 'COMMIT') events.push(['commit', began, wall() - began]);
    return result;
  } as typeof run;
}

/** The store fsyncs the WAL through a FileHandle; every FileHandle shares one prototype. */
async function timeFsyncs(): Promise<void> {
  const handle = await open('/dev/null', 'r');
  const prototype = Object.getPrototypeOf(handle) as { datasync: () => Promise<void> };
  await handle.close();
  const datasync = prototype.datasync;
  prototype.datasync = async function (this: unknown) {
    const started = wall();
    try {
      return await datasync.call(this);
    } finally {
      events.push(['fsync', started, wall() - started]);
    }
  };
}
