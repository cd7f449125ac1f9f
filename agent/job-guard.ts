// Keeps one job's processes from outliving the job or the agent: runs the job in a cgroup of
// its own where the host allows it (job-cgroup.ts), records its process group and cgroup in
// the work directory (job-records.ts), and gives it a watchdog (job-watchdog.ts) while it
// runs. The runner calls it at the job's start and end; `JobGuards` makes one per job and,
// when an agent starts, kills what an earlier run left.
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { detectCgroupSupport, JobCgroup, type CgroupSupport } from './job-cgroup.js';
import { JobRecords, processStartTime } from './job-records.js';
import { JobWatchdog } from './job-watchdog.js';

/** What JobRunner asks of a guard, in this order. */
export interface ProcessGuard {
  /** Spawns the job's main process (inside the job's cgroup, where there is one). */
  spawn(start: () => ChildProcess): ChildProcess;
  /** The main process runs as the leader of process group `pid`. */
  started(pid: number): void;
  /** The main process has exited and its group been killed: kill whatever else the job left. */
  exited(): void;
  /** The job is over: remove its cgroup and forget it. Never rejects. */
  ended(): Promise<void>;
}

export interface JobGuardsOptions {
  /** Run each job in a cgroup of its own where the host allows it. Default true. */
  cgroups?: boolean;
}

export class JobGuards {
  private readonly records: JobRecords;
  private readonly cgroups: CgroupSupport;

  /** Kills what an earlier agent's jobs left running in `workDir`, before anything else. */
  constructor(
    workDir: string,
    private readonly logger: Logger,
    options: JobGuardsOptions = {},
  ) {
    this.records = new JobRecords(workDir);
    this.records.sweep(logger);
    this.cgroups = options.cgroups === false ? { usable: false, reason: 'turned off' } : detectCgroupSupport();
    if (this.cgroups.usable) {
      logger.info({ cgroup_base: this.cgroups.base }, 'each job runs in a cgroup of its own, killed as a whole at its end');
    } else {
      logger.warn(
        { reason: this.cgroups.reason },
        'jobs run without cgroups: a process that leaves its job\'s process group (a setsid daemon) may outlive the job',
      );
    }
  }

  /** A guard for one attempt. */
  guard(jobId: string, attempt: number): ProcessGuard {
    const base = this.cgroups.usable ? this.cgroups.base : undefined;
    return new JobGuard(this.records, jobId, attempt, base, this.logger);
  }
}

class JobGuard implements ProcessGuard {
  private watchdog: JobWatchdog | undefined;
  private cgroup: JobCgroup | undefined;

  constructor(
    private readonly records: JobRecords,
    private readonly jobId: string,
    private readonly attempt: number,
    private readonly cgroupBase: string | undefined,
    private readonly logger: Logger,
  ) {}

  spawn(start: () => ChildProcess): ChildProcess {
    if (this.cgroupBase === undefined) return start();
    try {
      this.cgroup = new JobCgroup(this.cgroupBase, `muster-job-${this.jobId}-${this.attempt}`);
    } catch (err) {
      // The job still runs, with its process group as the only bound.
      this.logger.warn({ err, job_id: this.jobId, attempt: this.attempt }, 'cannot make the job a cgroup; running it without');
      return start();
    }
    return this.cgroup.spawnInside(start);
  }

  started(pid: number): void {
    const cgroup = this.cgroup?.dir;
    this.records.add({
      job_id: this.jobId,
      attempt: this.attempt,
      pgid: pid,
      start_time: processStartTime(pid),
      ...(cgroup === undefined ? {} : { cgroup }),
    });
    this.watchdog = new JobWatchdog(pid, cgroup, this.logger);
  }

  exited(): void {
    this.cgroup?.kill();
  }

  async ended(): Promise<void> {
    this.watchdog?.release();
    const cgroup = this.cgroup;
    if (cgroup !== undefined) {
      cgroup.kill();
      try {
        await cgroup.remove();
      } catch (err) {
        // The record stays: the agent's next run tries again.
        this.logger.warn({ err, cgroup: cgroup.dir }, 'cannot remove the job\'s cgroup');
        return;
      }
    }
    this.records.remove(this.jobId, this.attempt);
  }
}
