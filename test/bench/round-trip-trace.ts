// Where the job round trips of `npm run bench` spent their time, with BENCH_ROUND_TRIP_TRACE=1:
// each round trip (stamped by the client on the wall clock) is split at the plane's group
// commit and WAL fsync of it (plane-probe.ts), and the slow ones (over SLOW_MS) are compared
// with all of them: how often each kind of pause (a GC in the plane or in the client, a loop
// stall, a commit or fsync over 1 ms) fell inside them.
import { watchGc } from './gc-watch.js';
import type { ProbeEvent, ProbeFile } from './plane-probe.js';
import { quantile } from './quantiles.js';

/** A round trip as the client saw it, epoch ms. */
export interface Stamped {
  startMs: number;
  endMs: number;
}

const SLOW_MS = 2;

/** The client's own collections while it runs (its GC pauses are inside its round trips too). */
export function watchClientGc(): { events: ProbeEvent[]; stop(): void } {
  const events: ProbeEvent[] = [];
  const watch = watchGc(([startMs, durationMs, kind]) => events.push(['gc', startMs, durationMs, kind]));
  return { events, stop: () => watch.stop() };
}

interface Parts {
  total: number;
  /** Client write → the plane begins the commit (socket, decode, handling, the turn's end). */
  toCommit: number;
  commit: number;
  /** Commit end → fsync answered (waiting for the thread pool, the disk). */
  toDurable: number;
  /** fsync answered → the client has the JobResultAck (the ack's write, the socket, the client's loop). */
  toClient: number;
}

/** Lines that say what the round trips are made of, and what the slow ones have in common. */
export function explainRoundTrips(trips: readonly Stamped[], plane: ProbeFile, clientGc: readonly ProbeEvent[]): string[] {
  const commits = plane.events.filter((e) => e[0] === 'commit');
  const fsyncs = plane.events.filter((e) => e[0] === 'fsync');
  const parts: Parts[] = [];
  for (const trip of trips) {
    const commit = commits.find((e) => e[1] >= trip.startMs && e[1] < trip.endMs);
    const fsync = commit && fsyncs.find((e) => e[1] >= commit[1] + commit[2] && e[1] < trip.endMs);
    if (commit === undefined || fsync === undefined) continue;
    const durable = fsync[1] + fsync[2];
    parts.push({
      total: trip.endMs - trip.startMs,
      toCommit: commit[1] - trip.startMs,
      commit: commit[2],
      toDurable: durable - (commit[1] + commit[2]),
      toClient: trip.endMs - durable,
    });
  }
  const lines = [`round trip trace: ${parts.length} of ${trips.length} round trips matched to one commit and its fsync (ms: p50 / p99 / max)`];
  for (const key of ['total', 'toCommit', 'commit', 'toDurable', 'toClient'] as const) {
    const sorted = parts.map((p) => p[key]).sort((a, b) => a - b);
    lines.push(`  ${key.padEnd(10)} ${fmt(quantile(sorted, 0.5))} / ${fmt(quantile(sorted, 0.99))} / ${fmt(sorted.at(-1) ?? Number.NaN)}`);
  }
  const fsyncTimes = fsyncs.map((e) => e[2]).sort((a, b) => a - b);
  lines.push(`  every WAL fsync of the run (${fsyncTimes.length}): ${fmt(quantile(fsyncTimes, 0.5))} / ${fmt(quantile(fsyncTimes, 0.99))} / ${fmt(fsyncTimes.at(-1) ?? Number.NaN)}`);
  lines.push(`  plane event-loop delay over the run: ${fmt(plane.loopDelay.p50)} / ${fmt(plane.loopDelay.p99)} / ${fmt(plane.loopDelay.max)}`);
  const slow = parts.filter((p) => p.total > SLOW_MS);
  if (slow.length > 0) {
    const mean = (key: keyof Parts): string => fmt(slow.reduce((sum, p) => sum + p[key], 0) / slow.length);
    lines.push(`  the ${slow.length} over ${SLOW_MS} ms, mean parts: toCommit ${mean('toCommit')}, commit ${mean('commit')}, toDurable ${mean('toDurable')}, toClient ${mean('toClient')}`);
  }
  const share = (of: readonly Stamped[]): Record<string, number> => shareWithPauses(of, plane.events, clientGc);
  const slowTrips = trips.filter((t) => t.endMs - t.startMs > SLOW_MS);
  lines.push(`  share with a pause inside, slow: ${show(share(slowTrips))}; all: ${show(share(trips))}`);
  return lines;
}

/** For each kind of pause, the fraction of `trips` with at least one inside. */
function shareWithPauses(trips: readonly Stamped[], plane: readonly ProbeEvent[], clientGc: readonly ProbeEvent[]): Record<string, number> {
  const pauses: Array<[string, ProbeEvent]> = [
    ...plane.filter((e) => e[0] === 'gc' || e[0] === 'stall' || e[2] > 1).map((e): [string, ProbeEvent] => [e[0] === 'gc' || e[0] === 'stall' ? `plane ${e[0]}` : `${e[0]} > 1 ms`, e]),
    ...clientGc.map((e): [string, ProbeEvent] => ['client gc', e]),
  ];
  const counts: Record<string, number> = {};
  for (const trip of trips) {
    const seen = new Set<string>();
    for (const [name, e] of pauses) if (e[1] < trip.endMs && e[1] + e[2] > trip.startMs) seen.add(name);
    for (const name of seen) counts[name] = (counts[name] ?? 0) + 1;
  }
  for (const name of Object.keys(counts)) counts[name] = counts[name]! / Math.max(1, trips.length);
  return counts;
}

function show(shares: Record<string, number>): string {
  const entries = Object.entries(shares).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? 'none' : entries.map(([name, f]) => `${name} ${(f * 100).toFixed(0)}%`).join(', ');
}

function fmt(ms: number): string {
  return ms.toFixed(2);
}
