// The process's own metrics (CPU, memory, file descriptors, heap, event-loop delay) under the
// names prom-client's `collectDefaultMetrics` uses, so that the usual Node.js dashboards work,
// but all read at scrape. Not `collectDefaultMetrics` itself: its garbage-collection histogram
// runs a PerformanceObserver callback after every collection, a cost on the hot path (the
// MessagePack decoder collects often) for a figure read once a scrape; with it, three of four
// `npm run bench` runs showed a lower MessagePack heartbeat rate (README, Observability).
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { readCounter, readGauge } from './scraped-metrics.js';

/** The names this registers (the README lists them). */
export const PROCESS_METRICS = [
  'process_cpu_user_seconds_total',
  'process_cpu_system_seconds_total',
  'process_cpu_seconds_total',
  'process_start_time_seconds',
  'process_resident_memory_bytes',
  'process_open_fds',
  'nodejs_heap_size_total_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_external_memory_bytes',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_eventloop_lag_max_seconds',
] as const;

const START_SECONDS = Math.round(Date.now() / 1000 - process.uptime());

export function registerProcessMetrics(registry: Registry): void {
  // Sampled by libuv every 20 ms; reset at each scrape, so each figure covers one scrape interval.
  const delay = monitorEventLoopDelay({ resolution: 20 });
  delay.enable();
  const cpu = (): NodeJS.CpuUsage => process.cpuUsage();
  readCounter(registry, { name: 'process_cpu_user_seconds_total', help: 'User CPU time spent, in seconds.' }, () => cpu().user / 1e6);
  readCounter(registry, { name: 'process_cpu_system_seconds_total', help: 'System CPU time spent, in seconds.' }, () => cpu().system / 1e6);
  readCounter(registry, { name: 'process_cpu_seconds_total', help: 'User and system CPU time spent, in seconds.' }, () => {
    const { user, system } = cpu();
    return (user + system) / 1e6;
  });
  readGauge(registry, { name: 'process_start_time_seconds', help: 'Start time of the process since the Unix epoch, in seconds.' }, () => START_SECONDS);
  readGauge(registry, { name: 'process_resident_memory_bytes', help: 'Resident memory size, in bytes.' }, () => process.memoryUsage.rss());
  readGauge(registry, { name: 'process_open_fds', help: 'Open file descriptors (Linux; -1 where /proc is missing).' }, openFds);
  readGauge(registry, { name: 'nodejs_heap_size_total_bytes', help: 'V8 heap size, in bytes.' }, () => process.memoryUsage().heapTotal);
  readGauge(registry, { name: 'nodejs_heap_size_used_bytes', help: 'V8 heap used, in bytes.' }, () => process.memoryUsage().heapUsed);
  readGauge(registry, { name: 'nodejs_external_memory_bytes', help: 'Memory of C++ objects bound to JavaScript objects (buffers), in bytes.' }, () => process.memoryUsage().external);
  // Read in this order at every scrape (prom-client collects in registration order); the last resets.
  readGauge(registry, { name: 'nodejs_eventloop_lag_p50_seconds', help: 'Median event-loop delay since the previous scrape, in seconds.' }, () => seconds(delay.percentile(50)));
  readGauge(registry, { name: 'nodejs_eventloop_lag_p99_seconds', help: '99th percentile of the event-loop delay since the previous scrape, in seconds.' }, () => seconds(delay.percentile(99)));
  readGauge(registry, { name: 'nodejs_eventloop_lag_max_seconds', help: 'Longest event-loop delay since the previous scrape, in seconds.' }, () => {
    const max = seconds(delay.max);
    delay.reset();
    return max;
  });
}

/** Nanoseconds (NaN before the first sample) to seconds. */
function seconds(ns: number): number {
  return Number.isFinite(ns) ? ns / 1e9 : 0;
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}
