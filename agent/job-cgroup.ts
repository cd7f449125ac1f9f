// One cgroup (v2) per job, where the agent may make them: as root, or in a delegated subtree.
// A job's daemons may leave its process group (setsid) but never its cgroup, so killing the
// cgroup at the job's end kills everything the job started. No controllers are needed (only
// membership and `cgroup.kill`), so the job cgroups are plain children of the agent's own.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_DEFAULTS } from './agent-options.js';

/** Whether jobs can run in cgroups here: the parent directory of theirs, or why not. */
export type CgroupSupport = { usable: true; base: string } | { usable: false; reason: string };

// rmdir fails (EBUSY) until the killed processes have left; they do within milliseconds.
const { cgroupRemoveTries: REMOVE_TRIES, cgroupRemoveRetryMs: REMOVE_RETRY_MS } = AGENT_DEFAULTS;
const PROBE_PREFIX = 'muster-probe-';

/** Finds the agent's own cgroup v2 directory and checks that it may make children there. */
export function detectCgroupSupport(): CgroupSupport {
  if (process.platform !== 'linux') return { usable: false, reason: `no cgroups on ${process.platform}` };
  let base: string;
  try {
    const mount = cgroup2Mount();
    if (mount === undefined) return { usable: false, reason: 'no cgroup v2 file system mounted' };
    const own = /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
    if (own === undefined) return { usable: false, reason: 'the agent is in no cgroup v2 (/proc/self/cgroup)' };
    base = join(mount, own);
  } catch (err) {
    return { usable: false, reason: `cannot read the agent's cgroup: ${errorText(err)}` };
  }
  // The one real test of delegation: make a child, move into it and back, remove it.
  const probe = join(base, `${PROBE_PREFIX}${process.pid}`);
  try {
    removeStaleProbes(base);
    mkdirSync(probe);
    try {
      writeFileSync(join(probe, 'cgroup.procs'), String(process.pid));
      writeFileSync(join(base, 'cgroup.procs'), String(process.pid));
    } finally {
      rmdirSync(probe);
    }
  } catch (err) {
    return { usable: false, reason: `cannot make and enter a cgroup under ${base}: ${errorText(err)}` };
  }
  return { usable: true, base };
}

/** A job's cgroup: made before the job starts, killed and removed at its end. */
export class JobCgroup {
  readonly dir: string;

  /** Makes `<base>/<name>`, emptying and replacing one an earlier run left; throws when it cannot. */
  constructor(
    private readonly base: string,
    name: string,
  ) {
    this.dir = join(base, name);
    try {
      mkdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      killCgroup(this.dir);
      rmdirSync(this.dir);
      mkdirSync(this.dir);
    }
  }

  /**
   * Runs `spawn` with the agent itself moved into the job's cgroup, so that the child is born
   * there: moving it afterwards would let whatever it forks first escape. Spawning is
   * synchronous and the agent spawns from one thread, so nothing else of it runs meanwhile.
   */
  spawnInside<T>(spawn: () => T): T {
    writeFileSync(join(this.dir, 'cgroup.procs'), String(process.pid));
    try {
      return spawn();
    } finally {
      writeFileSync(join(this.base, 'cgroup.procs'), String(process.pid));
    }
  }

  /** SIGKILL to every process in the cgroup; true when there was one. */
  kill(): boolean {
    return killCgroup(this.dir);
  }

  remove(): Promise<void> {
    return removeCgroup(this.dir);
  }
}

/** SIGKILL to every process in the cgroup at `dir`; true when there was one. */
export function killCgroup(dir: string): boolean {
  const pids = cgroupPids(dir);
  if (pids.length === 0) return false;
  const killFile = join(dir, 'cgroup.kill');
  if (existsSync(killFile)) {
    // Atomic, and reaches processes forked while we kill (Linux 5.14 and later).
    writeFileSync(killFile, '1');
    return true;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
  return true;
}

/** Removes an empty cgroup, waiting briefly for killed processes to leave it. */
export async function removeCgroup(dir: string): Promise<void> {
  for (let tries = 1; ; tries++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || tries >= REMOVE_TRIES) throw err;
      // Anything forked between kill and now is killed too.
      killCgroup(dir);
      await new Promise((resolve) => setTimeout(resolve, REMOVE_RETRY_MS));
    }
  }
}

// Probes of agents killed while probing; rmdir removes only empty ones.
function removeStaleProbes(base: string): void {
  for (const name of readdirSync(base)) {
    if (!name.startsWith(PROBE_PREFIX)) continue;
    const pid = Number(name.slice(PROBE_PREFIX.length));
    if (Number.isInteger(pid) && pid > 0 && !existsSync(`/proc/${pid}`)) {
      try {
        rmdirSync(join(base, name));
      } catch {
        // Someone else's, or not empty: leave it.
      }
    }
  }
}

function cgroupPids(dir: string): number[] {
  try {
    return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

// The mount point of the cgroup2 file system: /sys/fs/cgroup on unified hosts, often
// /sys/fs/cgroup/unified on hybrid ones. Field 5 of mountinfo is the mount point; the
// type follows the " - " separator.
function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.split(' ')[0] === 'cgroup2') return left!.split(' ')[4];
  }
  return undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
