// The audit log: one JSON line per security event (authentication, connections, tokens, bans,
// refusals, rate limits), appended to the `auditLog` file when one is set and also logged
// through pino with `audit: true`. Every line has the same fields (`null` when unknown), and no
// line ever holds a token or a secret: events are a closed set of fields, and free text is
// scrubbed of anything shaped like a JWT before it is written.
//
// A flood must not become a flood of lines: `recordThrottled` writes an event at most once per
// key (e.g. per event and address) in a one-minute window and counts the rest, and the next
// line written for that key says how many were left out (`suppressed`).
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../../observability/logger.js';
import { DEFAULTS } from '../config.js';

export type AuditEventName =
  | 'auth_succeeded'
  | 'auth_failed'
  | 'connection_opened'
  | 'connection_closed'
  | 'token_minted'
  | 'token_revoked'
  | 'address_banned'
  | 'access_denied'
  | 'rate_limited'
  | 'suspicious_activity'
  /** A node sent a job message for an attempt it does not hold (job-coordinator.ts). */
  | 'attempt_refused';

/** One audit event as the caller gives it; `time` is added by the log. */
export interface AuditEvent {
  event: AuditEventName;
  /** The peer's IP address (a Unix socket path for Unix connections). */
  address?: string | undefined;
  node_id?: string | undefined;
  /** The id of the token involved (never the token). */
  jti?: string | undefined;
  /** Ties lines about one connection or request together: the `conn_id` of a node connection, the request id of an API call. */
  correlation_id?: string | undefined;
  /** Why, in words (an error message; never a token). */
  reason?: string | undefined;
  /** The protocol or API error code, where one was answered. */
  code?: string | undefined;
  /** Admin API: the token's role, the method and path. */
  role?: string | undefined;
  method?: string | undefined;
  path?: string | undefined;
  /** How many occurrences this one line stands for (suspicious activity). */
  count?: number | undefined;
  /** Bans: when the ban ends (RFC 3339). */
  until?: string | undefined;
  /** Throttled events: how many more of this kind were left out in the last window. */
  suppressed?: number | undefined;
}

/** What parts that only report events need of the audit log. */
export interface AuditSink {
  record(event: AuditEvent): void;
  /** Records `event` unless an event with `key` was recorded less than a window ago; true when written. */
  recordThrottled(key: string, event: AuditEvent): boolean;
}

export interface AuditLogOptions {
  /** File the JSON lines are appended to (created with mode 0600); empty: logger only. */
  path: string;
  logger: Logger;
  /** Throttle window of `recordThrottled`; default config.ts's `violationWindowMs`. */
  windowMs?: number;
  /** Most throttle keys kept; the oldest are forgotten beyond it. Default 10,000. */
  maxKeys?: number;
  /** Wall clock for `time`; default the system clock. */
  now?: () => Date;
  /** Monotonic clock in ms for the throttle window; default `performance.now()`. */
  clock?: () => number;
}

const FIELDS = ['address', 'node_id', 'jti', 'correlation_id', 'reason'] as const;
/** A JWT (three base64url parts, the first a JSON header): never written, whatever carried it. */
const JWT_LIKE = /eyJ[\w-]*\.[\w-]*\.[\w-]*/g;
const MAX_TEXT = 300;
const WARN_EVENTS: ReadonlySet<AuditEventName> = new Set([
  'auth_failed',
  'address_banned',
  'access_denied',
  'rate_limited',
  'suspicious_activity',
  'attempt_refused',
]);

interface Throttle {
  start: number;
  suppressed: number;
}

export class AuditLog implements AuditSink {
  private fd: number | undefined;
  private readonly logger: Logger;
  private readonly windowMs: number;
  private readonly maxKeys: number;
  private readonly now: () => Date;
  private readonly clock: () => number;
  /** In window-start order (a renewed key is moved to the end), so expired keys are at the front. */
  private readonly throttles = new Map<string, Throttle>();
  private writeFailed = false;

  constructor(options: AuditLogOptions) {
    this.logger = options.logger.child({ audit: true });
    this.windowMs = options.windowMs ?? DEFAULTS.violationWindowMs;
    this.maxKeys = options.maxKeys ?? 10_000;
    this.now = options.now ?? (() => new Date());
    this.clock = options.clock ?? (() => performance.now());
    if (options.path !== '') {
      mkdirSync(dirname(options.path), { recursive: true });
      this.fd = openSync(options.path, 'a', 0o600);
    }
  }

  record(event: AuditEvent): void {
    const warn = WARN_EVENTS.has(event.event);
    // Neither a file nor a log level that shows it (a registration storm is one line per node): nothing to build.
    if (this.fd === undefined && !this.logger.isLevelEnabled(warn ? 'warn' : 'info')) return;
    const line = toLine(event, this.now());
    // pino adds its own `time`.
    const { time: _time, ...fields } = line;
    if (warn) this.logger.warn(fields, `audit: ${event.event}`);
    else this.logger.info(fields, `audit: ${event.event}`);
    this.append(`${JSON.stringify(line)}\n`);
  }

  recordThrottled(key: string, event: AuditEvent): boolean {
    const now = this.clock();
    const throttle = this.throttles.get(key);
    if (throttle !== undefined && now - throttle.start < this.windowMs) {
      throttle.suppressed++;
      return false;
    }
    const suppressed = throttle?.suppressed ?? 0;
    this.throttles.delete(key);
    this.forgetExpired(now);
    this.throttles.set(key, { start: now, suppressed: 0 });
    // Bounded whatever the flood: beyond the cap the oldest key is forgotten.
    if (this.throttles.size > this.maxKeys) this.throttles.delete(this.throttles.keys().next().value as string);
    this.record(suppressed > 0 ? { ...event, suppressed } : event);
    return true;
  }

  /** Closes the file; later events go to the logger only. */
  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private forgetExpired(now: number): void {
    for (const [key, throttle] of this.throttles) {
      if (now - throttle.start < this.windowMs) return;
      this.throttles.delete(key);
    }
  }

  private append(text: string): void {
    if (this.fd === undefined) return;
    try {
      // Synchronous: audit lines are few (floods are throttled) and none may be lost on a crash.
      writeSync(this.fd, text);
    } catch (err) {
      if (!this.writeFailed) this.logger.error({ err }, 'audit log write failed; audit events go to the log only');
      this.writeFailed = true;
    }
  }
}

/** The line: `time`, `event`, the five common fields (null when unknown), then whatever else is set. */
function toLine(event: AuditEvent, time: Date): Record<string, unknown> {
  const line: Record<string, unknown> = { time: time.toISOString(), event: event.event };
  for (const field of FIELDS) line[field] = clean(event[field]);
  for (const [key, value] of Object.entries(event)) {
    if (key === 'event' || value === undefined || (FIELDS as readonly string[]).includes(key)) continue;
    line[key] = clean(value);
  }
  return line;
}

function clean(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') return value;
  const text = value.replace(JWT_LIKE, '[token]');
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text;
}
