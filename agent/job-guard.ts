// Keeps one job's processes from outliving the job or the agent: records the job's process
// group in the work directory and gives it a watchdog (job-watchdog.ts) while it runs. The
// runner calls it at the job's start and end; `JobGuards` makes one per job and, when an
// agent starts, kills what an earlier run left.
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { JobRecords, processStartTime } from './job-records.js';
import { JobWatchdog } from './job-watchdog.js';

/** What JobRunner asks of a guard, in this order. */
export interface ProcessGuard {
  /** Spawns the job's main process. */
  spawn(start: () => ChildProcess): ChildProcess;
  /** The main process runs as the leader of process group `pid`. */
  started(pid: number): void;
  /** The job is over and its group killed: forget it. */
  ended(): void;
}

export class JobGuards {
  private readonly records: JobRecords;

  /** Kills what an earlier agent's jobs left running in `workDir`, before anything else. */
  constructor(
    workDir: string,
    private readonly logger: Logger,
  ) {
    this.records = new JobRecords(workDir);
    this.records.sweep(logger);
  }

  /** A guard for one attempt. */
  guard(jobId: string, attempt: number): ProcessGuard {
    return new JobGuard(this.records, jobId, attempt, this.logger);
  }
}

class JobGuard implements ProcessGuard {
  private watchdog: JobWatchdog | undefined;

  constructor(
    private readonly records: JobRecords,
    private readonly jobId: string,
    private readonly attempt: number,
    private readonly logger: Logger,
  ) {}

  spawn(start: () => ChildProcess): ChildProcess {
    return start();
  }

  started(pid: number): void {
    this.records.add({ job_id: this.jobId, attempt: this.attempt, pgid: pid, start_time: processStartTime(pid) });
    this.watchdog = new JobWatchdog(pid, this.logger);
  }

  ended(): void {
    this.watchdog?.release();
    this.records.remove(this.jobId, this.attempt);
  }
}
