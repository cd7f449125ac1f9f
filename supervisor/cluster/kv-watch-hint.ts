// A watch on a KV bucket used as a hint (issue 10 item 4: "KV watches are hints"): every entry
// written after the last revision seen reaches `onEntry`, in order, at least once. The watch is
// re-created after every reconnect from the revision after the last one seen, and a timer checks
// it against the bucket stream's last sequence (one stream-info read, whatever the number of
// keys): a watch that has not reached the sequence of the previous check is stuck and is
// re-created. With one value per key, a re-created watch delivers the latest entry of every key
// changed since, which is all a holder of hints needs.
import type { NatsConnection, QueuedIterator } from '@nats-io/nats-core';
import { KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';

export interface KvWatchHintOptions {
  /** The connection whose reconnects re-create the watch. */
  nc: NatsConnection;
  /** The bucket watched. */
  kv: KV;
  /** Every entry written after the start, in revision order, possibly more than once. */
  onEntry: (entry: KvWatchEntry) => void;
  /** A failed (re-)creation or check; the next reconnect or check tries again. */
  onError: (err: unknown) => void;
  /** How often the watch is checked against the stream (0: never). */
  checkMs: number;
}

export class KvWatchHint {
  private lastSeen = 0;
  private seqAtLastCheck = 0;
  private watch: QueuedIterator<KvWatchEntry> | undefined;
  private watching: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private statusIterator: AsyncIterable<unknown> | undefined;
  private closed = false;
  /** Times the watch was (re-)created, for tests and metrics. */
  restarts = 0;

  private constructor(private readonly o: KvWatchHintOptions) {}

  /** Starts watching entries written from now on. */
  static async start(options: KvWatchHintOptions): Promise<KvWatchHint> {
    const hint = new KvWatchHint(options);
    hint.lastSeen = (await options.kv.status()).streamInfo.state.last_seq;
    hint.seqAtLastCheck = hint.lastSeen;
    await hint.restart();
    void hint.followStatus();
    hint.scheduleCheck();
    return hint;
  }

  /** The highest revision delivered so far. */
  get revision(): number {
    return this.lastSeen;
  }

  /** (Re-)creates the watch from the revision after the last one seen. */
  async restart(): Promise<void> {
    if (this.closed) return;
    this.watch?.stop();
    await this.watching?.catch(() => {});
    const watch = await this.o.kv.watch({ include: KvWatchInclude.UpdatesOnly, resumeFromRevision: this.lastSeen + 1 });
    this.restarts += 1;
    this.watch = watch;
    this.watching = (async () => {
      for await (const entry of watch) {
        if (entry.revision > this.lastSeen) this.lastSeen = entry.revision;
        this.o.onEntry(entry);
      }
    })().catch((err: unknown) => this.o.onError(err));
  }

  /** One stream-info read; re-creates the watch when it is stuck behind the previous check. */
  async check(): Promise<void> {
    const lastSeq = (await this.o.kv.status()).streamInfo.state.last_seq;
    if (this.lastSeen < this.seqAtLastCheck) await this.restart();
    this.seqAtLastCheck = lastSeq;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.checkTimer);
    (this.statusIterator as { stop?: () => void } | undefined)?.stop?.();
    this.watch?.stop();
    await this.watching?.catch(() => {});
  }

  private async followStatus(): Promise<void> {
    const iterator = this.o.nc.status();
    this.statusIterator = iterator;
    try {
      for await (const status of iterator) {
        if (this.closed) return;
        if (status.type === 'reconnect') await this.restart().catch((err: unknown) => this.o.onError(err));
      }
    } catch (err) {
      this.o.onError(err);
    }
  }

  private scheduleCheck(): void {
    if (this.closed || this.o.checkMs <= 0) return;
    this.checkTimer = setTimeout(() => {
      this.check()
        .catch((err: unknown) => this.o.onError(err))
        .finally(() => this.scheduleCheck());
    }, this.o.checkMs);
  }
}
