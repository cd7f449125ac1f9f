// One node connection's message and byte rates and its reading time (token buckets), checked on
// every frame before it is decoded. A frame over any of them is dropped; the node hears
// `rate_limited` at most once a second (answering every dropped frame would amplify the flood),
// and a node that goes on being answered within a minute is abusive: the session closes it and
// its address is banned.
import { DEFAULTS } from '../config.js';
import { TokenBucket } from './token-bucket.js';

export interface NodeRates {
  /** Frames a second; 0 turns the limit off. */
  messagesPerSecond: number;
  /** Frames a node may send at once before the rate applies. */
  messageBurst: number;
  /** Frame body bytes a second; 0 turns the limit off. */
  bytesPerSecond: number;
  /** Bytes a node may send at once; should be at least `max_frame_bytes`, or a large frame could never pass. */
  byteBurst: number;
  /**
   * Milliseconds a second the plane may spend reading (walking, decoding, validating) one node's
   * frames; over it, its frames are dropped until the debt is paid back. 0 turns the limit off.
   */
  decodeMsPerSecond?: number;
  /** Reading time a node may use at once before `decodeMsPerSecond` applies. */
  decodeBurstMs?: number;
  /**
   * The longest a connection over its rates stops being read; default 1 s. The plane passes its
   * heartbeat interval: a node over its rate for a moment is still heard within its liveness window.
   */
  maxPauseMs?: number;
  /** `rate_limited` answers within `violationWindowMs` that make the node abusive; 0 never does. */
  banAfterViolations: number;
  /** The window those answers are counted in; default config.ts's `violationWindowMs`. */
  violationWindowMs?: number;
  /** The node hears `rate_limited` at most this often; default config.ts's `rateLimitedAnswerIntervalMs`. */
  answerIntervalMs?: number;
}

/** What to do with a frame `admit` refused: drop it quietly, answer `rate_limited`, or close and ban. */
export type OverRate = 'drop' | 'answer' | 'abuse';

const DEFAULT_MAX_PAUSE_MS = 1_000;

export class NodeRateLimit {
  /** Frames dropped so far, for the answer's message and the logs. */
  dropped = 0;
  /** `rate_limited` answers in the current window. */
  violations = 0;
  private readonly messages: TokenBucket | undefined;
  private readonly bytes: TokenBucket | undefined;
  private readonly decoding: TokenBucket | undefined;
  private readonly maxPauseMs: number;
  private readonly banAfter: number;
  private readonly windowMs: number;
  private readonly answerEveryMs: number;
  private refusedAt = 0;
  private answeredAt = Number.NEGATIVE_INFINITY;
  private windowStart: number;

  constructor(rates: NodeRates, now: number = performance.now()) {
    const { messagesPerSecond: mps, messageBurst, bytesPerSecond: bps, byteBurst } = rates;
    this.messages = mps > 0 ? new TokenBucket(mps, Math.max(1, messageBurst), now) : undefined;
    this.bytes = bps > 0 ? new TokenBucket(bps, Math.max(1, byteBurst), now) : undefined;
    const dps = rates.decodeMsPerSecond ?? 0;
    this.decoding = dps > 0 ? new TokenBucket(dps, Math.max(1, rates.decodeBurstMs ?? dps), now) : undefined;
    this.banAfter = rates.banAfterViolations;
    this.windowMs = rates.violationWindowMs ?? DEFAULTS.violationWindowMs;
    this.answerEveryMs = rates.answerIntervalMs ?? DEFAULTS.rateLimitedAnswerIntervalMs;
    this.maxPauseMs = rates.maxPauseMs ?? DEFAULT_MAX_PAUSE_MS;
    this.windowStart = now;
  }

  /** True when the limits are all off: the session need not ask. */
  static unlimited(rates: NodeRates): boolean {
    return rates.messagesPerSecond <= 0 && rates.bytesPerSecond <= 0 && (rates.decodeMsPerSecond ?? 0) <= 0;
  }

  /** The per-frame check: true lets a frame of `bytes` through. Allocates nothing. */
  admit(bytes: number, now: number = performance.now()): boolean {
    if (
      (this.decoding === undefined || this.decoding.available(now) > 0) &&
      (this.messages === undefined || this.messages.take(1, now)) &&
      (this.bytes === undefined || this.bytes.take(bytes, now))
    ) {
      return true;
    }
    this.dropped++;
    this.refusedAt = now;
    return false;
  }

  /**
   * After `admit` said no: how long the connection may stop reading, until a frame of `bytes`
   * could pass again (at most `maxPauseMs`).
   */
  pauseMs(bytes: number, now: number = performance.now()): number {
    const waits = [this.messages?.msUntil(1, now) ?? 0, this.bytes?.msUntil(bytes, now) ?? 0, this.decoding?.msUntil(Number.MIN_VALUE, now) ?? 0];
    return Math.min(this.maxPauseMs, Math.ceil(Math.max(...waits)));
  }

  /**
   * Gives back what one admitted frame of `bytes` cost (its message, its bytes and `readingMs` of
   * reading time): for frames paced by other means (artifact chunks, by their window).
   */
  refund(bytes: number, readingMs: number, now: number = performance.now()): void {
    this.messages?.refund(1, now);
    this.bytes?.refund(bytes, now);
    this.decoding?.refund(readingMs, now);
  }

  /** The time reading one admitted frame took, counted against the node (issue 8 item 8). */
  chargeDecoding(ms: number, now: number = performance.now()): void {
    this.decoding?.charge(ms, now);
  }

  /** After `admit` said no: what the session does about that frame. */
  overRate(): OverRate {
    const now = this.refusedAt;
    if (now - this.answeredAt < this.answerEveryMs) return 'drop';
    this.answeredAt = now;
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.violations = 0;
    }
    this.violations++;
    return this.banAfter > 0 && this.violations >= this.banAfter ? 'abuse' : 'answer';
  }
}
