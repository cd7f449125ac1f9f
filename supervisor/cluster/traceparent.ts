// W3C trace context (https://www.w3.org/TR/trace-context/) for messages that cross replicas over
// NATS: every message carries a `traceparent` header, the caller's when it gives a valid one,
// else a fresh one, so that a trace can follow a change from the replica that made it.
// While the process traces (observability/tracing.ts), the header is injected from the active
// span and extracted into the receiver's span (nats-trace.ts), with the messaging conventions.
import { randomFillSync } from 'node:crypto';

/** The NATS header that carries it, named as W3C and OpenTelemetry's propagators name it. */
export const TRACEPARENT_HEADER = 'traceparent';

// Version 00 exactly; a later version may append fields after the flags (the spec says to parse
// its first four), but version ff is invalid.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** True for a `traceparent` a W3C parser accepts: known layout, non-zero ids, not version ff. */
export function isTraceparent(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > 512) return false;
  const m = TRACEPARENT.exec(value);
  if (m === null) return false;
  const [, version, traceId, spanId, , rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return false;
  return traceId !== ZERO_TRACE && spanId !== ZERO_SPAN;
}

/**
 * A new trace: random trace and span ids, sampled unless `sampled` is false (a process that
 * traces marks the ids no span of its own recorded as not sampled, so a receiver records none).
 */
export function newTraceparent(sampled = true): string {
  return `00-${nonZeroHex(16)}-${nonZeroHex(8)}-${sampled ? '01' : '00'}`;
}

/** A new span in the trace of `parent` (its trace id and flags), or a new trace when `parent` is not valid. */
export function childTraceparent(parent?: string): string {
  if (!isTraceparent(parent)) return newTraceparent();
  return `00-${parent.slice(3, 35)}-${nonZeroHex(8)}-${parent.slice(53, 55)}`;
}

/** `value` when valid, else a fresh one: what every publish puts in its header. */
export function traceparentOrNew(value: string | undefined): string {
  return isTraceparent(value) ? value : newTraceparent();
}

// One call to the CSPRNG per 4 KiB of ids, not two per message: small randomBytes calls took a
// quarter of the bus's CPU time (bench -- bus).
const POOL_BYTES = 4_096;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

function nonZeroHex(bytes: number): string {
  for (;;) {
    if (poolOffset + bytes > POOL_BYTES) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    const hex = pool.toString('hex', poolOffset, (poolOffset += bytes));
    // All zeros is invalid; at 2^-64 odds or less, take the next bytes rather than patch a digit.
    if (!ALL_ZEROS.test(hex)) return hex;
  }
}

const ALL_ZEROS = /^0+$/;
