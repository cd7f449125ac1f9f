// A job's processes must not outlive the agent that started them, however the agent dies
// (even `kill -9`, which runs no handler). So each job gets a watchdog: a tiny `sh` in a
// session of its own, holding the read end of a pipe whose write end only the agent holds.
// When the agent dies the kernel closes the pipe, the watchdog's `read` returns, and it kills
// the job's process group and its cgroup (then removes it). At a normal end the agent
// writes `done` and the watchdog leaves.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

// $1: the job's process group; $2: its cgroup directory or empty. Ignores the terminal's
// signals: a Ctrl-C meant for the agent must not take the watchdog before it has done its
// work. cgroup.kill needs Linux 5.14; before that, each process of the cgroup is killed.
const SCRIPT = `trap '' HUP INT
read -r word
[ "$word" = done ] && exit 0
kill -9 -"$1" 2>/dev/null
[ -n "$2" ] || exit 0
if [ -e "$2/cgroup.kill" ]; then echo 1 > "$2/cgroup.kill"
else while read -r pid; do kill -9 "$pid"; done < "$2/cgroup.procs"
fi
for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do rmdir "$2" 2>/dev/null && break; sleep 0.05; done
exit 0`;

export class JobWatchdog {
  private readonly child: ChildProcess;
  private released = false;

  /** Starts watching the process group `pgid` and the cgroup at `cgroupDir`, if any. */
  constructor(pgid: number, cgroupDir: string | undefined, logger?: Logger) {
    this.child = spawn('/bin/sh', ['-c', SCRIPT, 'muster-job-watchdog', String(pgid), cgroupDir ?? ''], {
      // Its own session: not in the agent's process group (a signal to that group must not
      // end it) nor in the job's (the job's own `kill 0` must not either).
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    this.child.on('error', (err) => logger?.warn({ err, pgid }, 'job watchdog failed'));
    // Writes to a watchdog that is gone fail with EPIPE: nothing to do about it.
    this.child.stdin!.on('error', () => {});
    // Neither the watchdog nor its pipe may keep the agent's process alive.
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  /** The job is over and its group killed by the agent: the watchdog leaves without acting. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.child.stdin!.end('done\n');
  }
}
