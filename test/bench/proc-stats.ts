// What Linux says about a process of the benchmarks, read from /proc: resident memory,
// CPU time and the open-files limit. Linux only, as the benchmarks are.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux). */
export const CLOCK_TICKS = readClockTicks();

/** A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`, ...). */
export function statusKiB(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]);
}

/** User plus system CPU time of the process so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS;
}

/** The soft open-files limit the process runs with. */
export function openFilesLimit(pid: number): string {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  return match === null ? '?' : match[1]!;
}

/** Busy and total CPU time of the whole machine so far (all cores), in seconds, from /proc/stat. */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = ticks[3]! + ticks[4]!;
  return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
}

/** Samples CPU use of a process (or of several together) over a window: `start()` then `percent()` (of one core). */
export class CpuWindow {
  private cpu0 = 0;
  private wall0 = 0;
  private readonly pids: number[];

  constructor(pid: number | number[]) {
    this.pids = Array.isArray(pid) ? pid : [pid];
  }

  start(): void {
    this.cpu0 = this.used();
    this.wall0 = performance.now();
  }

  /** Percent of one core since `start()`, and the window's length in seconds. */
  percent(): { percent: number; seconds: number; cpuSeconds: number } {
    const seconds = (performance.now() - this.wall0) / 1000;
    const used = this.used() - this.cpu0;
    return { percent: (100 * used) / seconds, seconds, cpuSeconds: used };
  }

  private used(): number {
    return this.pids.reduce((n, pid) => n + cpuSeconds(pid), 0);
  }
}

function readClockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
