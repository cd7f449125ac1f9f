// Keeps one connection to a control plane alive: dials the URLs in turn, runs a session
// on each connection until it closes, and waits a backoff delay before the next try.
// The backoff is reset by the owner (after a successful registration), not here; the owner
// may also cap a delay (`delayLimitMs`), e.g. while a plane holds its jobs for a short while.
import type { Logger } from 'pino';
import type { Connection } from '../transports/transport.js';
import type { Backoff } from './backoff.js';

export interface ReconnectLoopOptions {
  urls: readonly string[];
  dial(url: string): Promise<Connection>;
  /** Runs one connection; resolves when it has closed. */
  session(conn: Connection, url: string): Promise<void>;
  backoff: Backoff;
  /** A ceiling for the next delay, asked before each wait; undefined: the backoff's own. */
  delayLimitMs?: () => number | undefined;
  logger: Logger;
}

export class ReconnectLoop {
  private stopped = false;
  private urlIndex = 0;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: ReconnectLoopOptions) {
    if (options.urls.length === 0) throw new Error('the agent needs at least one control-plane URL');
  }

  /** Starts dialling; the first try is immediate. */
  start(): void {
    this.running ??= this.run();
  }

  /** No further tries; resolves once the current session (if any) has ended. Close it first. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.running;
  }

  private async run(): Promise<void> {
    for (let first = true; !this.stopped; first = false) {
      if (!first) await this.sleep(this.options.backoff.next(this.options.delayLimitMs?.()));
      if (this.stopped) break;
      const url = this.options.urls[this.urlIndex % this.options.urls.length]!;
      // Every try moves on to the next URL: a plane that went away is likely to stay away a while.
      this.urlIndex += 1;
      let conn: Connection;
      try {
        conn = await this.options.dial(url);
      } catch (err) {
        // Expected while a plane is down: one line, no stack, on every try.
        this.options.logger.warn({ url, error: err instanceof Error ? err.message : String(err) }, 'cannot reach control plane');
        continue;
      }
      if (this.stopped) {
        await conn.close();
        break;
      }
      await this.options.session(conn, url);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }
}
