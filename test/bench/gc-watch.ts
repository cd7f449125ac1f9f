// Garbage collections of this process as they happen (PerformanceObserver 'gc'), stamped on the
// wall clock (epoch ms) so that two processes' records line up: the plane's (plane-probe.ts)
// and the bench client's (round-trip-trace.ts).
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';

/** A collection: its start (epoch ms), its duration (ms) and its kind (perf_hooks' NODE_PERFORMANCE_GC_*). */
export type GcPause = [startMs: number, durationMs: number, kind: number | undefined];

export function watchGc(onPause: (pause: GcPause) => void): { stop(): void } {
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const detail = (e as PerformanceEntry & { detail?: { kind?: number } }).detail;
      onPause([performance.timeOrigin + e.startTime, e.duration, detail?.kind]);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return { stop: () => observer.disconnect() };
}
