// Where each running job's processes are, kept on disk under `<work-dir>/.jobs/`: its process
// group, with the leader's start time so that a reused pid is not mistaken for it, and its
// cgroup where it has one. A job's watchdog kills them when the agent dies; the records are
// for what is left when the watchdog died too (the agent's whole tree killed, the OOM
// killer): a restarted agent kills every recorded job before it takes new ones.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { killCgroup, removeCgroup } from './job-cgroup.js';

/** One job's processes, as recorded. */
export interface JobRecord {
  job_id: string;
  attempt: number;
  /** The process group: the job's main process is its leader. */
  pgid: number;
  /** The leader's start time (field 22 of /proc/<pid>/stat), or null where there is no /proc. */
  start_time: string | null;
  /** The job's cgroup directory, when it runs in one. */
  cgroup?: string;
}

export class JobRecords {
  private readonly dir: string;

  constructor(workDir: string) {
    this.dir = join(workDir, '.jobs');
    mkdirSync(this.dir, { recursive: true });
  }

  add(record: JobRecord): void {
    // Synchronous: the record exists before the agent can do anything else.
    writeFileSync(this.fileOf(record.job_id, record.attempt), JSON.stringify(record));
  }

  remove(jobId: string, attempt: number): void {
    rmSync(this.fileOf(jobId, attempt), { force: true });
  }

  /** Kills what every record names and forgets it; returns the records of jobs that still ran. */
  sweep(logger: Logger): JobRecord[] {
    const found: JobRecord[] = [];
    for (const name of readdirSync(this.dir)) {
      const file = join(this.dir, name);
      const record = readRecord(file);
      if (record !== undefined && killRecorded(record)) found.push(record);
      if (record?.cgroup === undefined) {
        rmSync(file, { force: true });
        continue;
      }
      // The record goes with its cgroup: should that fail, the next start tries again.
      const { cgroup } = record;
      removeCgroup(cgroup).then(
        () => rmSync(file, { force: true }),
        (err: unknown) => logger.warn({ err, cgroup }, 'cannot remove the cgroup of an earlier job'),
      );
    }
    if (found.length > 0) {
      logger.warn(
        { jobs: found.map((r) => `${r.job_id}-${r.attempt}`) },
        'killed job processes left running by an earlier run of the agent',
      );
    }
    return found;
  }

  private fileOf(jobId: string, attempt: number): string {
    return join(this.dir, `${jobId}-${attempt}.json`);
  }
}

/** The start time of a process, to tell it from a later one with the same pid; null when unknown. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields are counted after its closing paren.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

// True when something of the job was still running.
function killRecorded(record: JobRecord): boolean {
  let killed = record.cgroup !== undefined && killCgroup(record.cgroup);
  // Only a leader that is the very process recorded: its pid may since have gone to another.
  const now = processStartTime(record.pgid);
  if (now !== null && now === record.start_time) {
    try {
      process.kill(-record.pgid, 'SIGKILL');
      killed = true;
    } catch {
      // Gone meanwhile.
    }
  }
  return killed;
}

function readRecord(file: string): JobRecord | undefined {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8')) as Partial<JobRecord>;
    if (typeof value.pgid !== 'number' || typeof value.job_id !== 'string' || typeof value.attempt !== 'number') return undefined;
    return value as JobRecord;
  } catch {
    // Half written when the agent died: the watchdog had it covered.
    return undefined;
  }
}
