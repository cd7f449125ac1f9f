// The plane's periodic sweep of abandoned artifact uploads (ArtifactStore.sweep): an upload
// started and never finished (its node died, its job was cancelled, the process that took it
// restarted) would otherwise keep its partial bytes for ever. Every `artifactAbandonAfterMs / 4`
// (at most every 15 minutes, at least every second) it removes the uploads idle for
// `artifactAbandonAfterMs` whose attempt can no longer resume.
//
// Why idle alone is not the rule: PROTOCOL.md section 8 has the plane keep what it stored of an
// artifact of the *current* attempt across a dropped connection, with no limit of time, and an
// attempt stays current as long as its job runs (a timeout of up to a week). A threshold that
// never removed a resumable upload by time alone would have to exceed the longest job, so the
// sweep asks the job store: an upload is abandoned only when it is idle *and* its attempt is not
// the job's current one of a job still under way (the job ended, went on to a later attempt, or
// is gone). Attempts only move forward, so such an upload can never be resumed again (the intake
// refuses an ArtifactStart of an attempt that is not current), and the idle time is the grace
// an operator gives an upload after that, and a bound on how long a sweep looks at one.
import type { Logger } from 'pino';
import { TERMINAL_STATES, type JobStore } from '../store/job-store.js';
import type { ArtifactStore, SweepRule } from './artifact-store.js';

export interface ArtifactSweeperOptions {
  store: Pick<ArtifactStore, 'sweep'>;
  jobs: Pick<JobStore, 'get'>;
  /** `artifactAbandonAfterMs`: an upload not advanced for this long may be abandoned; 0: never swept. */
  abandonAfterMs: number;
  logger: Logger;
  /** The clock (tests). */
  now?: () => number;
}

const MIN_INTERVAL_MS = 1_000;
const MAX_INTERVAL_MS = 15 * 60_000;

export class ArtifactSweeper {
  readonly #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ArtifactSweeperOptions) {
    if (o.abandonAfterMs === 0) return;
    const every = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, Math.floor(o.abandonAfterMs / 4)));
    this.#timer = setInterval(() => void this.sweep(), every);
    this.#timer.unref();
  }

  /** One sweep now (the timer's, or a test's): how many uploads it removed; a failure is logged, and the next tick tries again. */
  sweep(): Promise<number> {
    const run = this.#running.then(() => this.#sweepOnce());
    this.#running = run;
    return run;
  }

  /** Stops the timer and waits for a sweep under way. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  /** The rule a sweep applies now. */
  rule(): SweepRule {
    return {
      idleBefore: (this.o.now ?? Date.now)() - this.o.abandonAfterMs,
      resumable: async (jobId, attempt) => {
        const job = await this.o.jobs.get(jobId);
        return job !== undefined && !TERMINAL_STATES.has(job.state) && job.attempt === attempt;
      },
    };
  }

  async #sweepOnce(): Promise<number> {
    try {
      const removed = await this.o.store.sweep(this.rule());
      if (removed > 0) this.o.logger.info({ removed, abandon_after_ms: this.o.abandonAfterMs }, 'abandoned artifact uploads removed');
      return removed;
    } catch (err) {
      this.o.logger.warn({ err }, 'sweeping abandoned artifact uploads failed; tried again at the next tick');
      return 0;
    }
  }
}
