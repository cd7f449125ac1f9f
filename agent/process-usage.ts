// CPU time and peak memory of a job's process, for JobResult.metrics. Node gives no
// rusage for a child, so on Linux we read /proc: the child's peak resident set (VmHWM)
// while it runs, and its CPU time from the agent's own "children" counters, which the
// kernel raises by a child's total (and its reaped descendants') once it is reaped.
// Where /proc is missing both stay 0, which the protocol reads as "unknown".
import { readFileSync } from 'node:fs';

// USER_HZ: fixed at 100 on every Linux architecture Node supports.
const CLOCK_TICKS_PER_SECOND = 100;

let lastChildrenTicks = readChildrenTicks() ?? 0;

/**
 * CPU ms that reaped children used since the previous call. Call it right after a child's
 * exit event: children reaped in the same instant are counted towards the first caller.
 */
export function takeReapedChildrenCpuMs(): number {
  const now = readChildrenTicks();
  if (now === undefined) return 0;
  const delta = Math.max(0, now - lastChildrenTicks);
  lastChildrenTicks = now;
  return (delta * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Samples one process's peak memory while it runs. */
export class PeakMemorySampler {
  private peakKb = 0;
  private readonly timer: NodeJS.Timeout;

  /** Samples every `intervalMs` (agent-options.ts's `memorySampleIntervalMs`). */
  constructor(
    private readonly pid: number,
    intervalMs: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** Stops sampling; returns the peak in MB (0 if never read). */
  stop(): number {
    clearInterval(this.timer);
    return Math.round((this.peakKb / 1024) * 100) / 100;
  }

  private sample(): void {
    try {
      const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      if (match !== null) this.peakKb = Math.max(this.peakKb, Number(match[1]));
    } catch {
      // Gone already, or no /proc: keep what we have.
    }
  }
}

// cutime + cstime of this process (fields 16 and 17 of /proc/self/stat).
function readChildrenTicks(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // The command name (field 2) may hold spaces; fields are counted after its closing paren.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cutime = Number(fields[13]);
    const cstime = Number(fields[14]);
    return Number.isFinite(cutime) && Number.isFinite(cstime) ? cutime + cstime : undefined;
  } catch {
    return undefined;
  }
}
