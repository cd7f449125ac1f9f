// One token bucket per key (per admin API token), in a map of bounded size: beyond `maxKeys`
// the least recently used key is forgotten (it starts again with a full bucket, which errs on the
// generous side and keeps memory bounded whatever a client sends).
import { TokenBucket } from './token-bucket.js';

export class KeyedRateLimit {
  private readonly buckets = new Map<string, TokenBucket>();

  /**
   * @param rate requests a second per key (> 0)
   * @param burst requests a key may make at once
   * @param maxKeys most keys remembered
   */
  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Spends one token of `key`; false when it has none left. */
  take(key: string, now: number = performance.now()): boolean {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.rate, Math.max(1, this.burst), now);
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    } else {
      // Moved to the back: the front is the least recently used.
      this.buckets.delete(key);
    }
    this.buckets.set(key, bucket);
    return bucket.take(1, now);
  }

  /** Keys remembered now. */
  get size(): number {
    return this.buckets.size;
  }
}
