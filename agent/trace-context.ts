// W3C trace context for the agent's messages: a message about a job continues the
// trace of its JobAssignment (same trace id, a new span); anything else starts a trace.
// While the agent traces (observability/tracing.ts), messages carry its real spans' contexts instead.
import { randomBytes } from 'node:crypto';
import { traceparentOf, tracingOn } from '../observability/spans.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;

/** A `traceparent` with a fresh span id, in the trace of `parent` when that is valid. */
export function childTraceparent(parent?: string): string {
  const match = parent === undefined ? null : TRACEPARENT.exec(parent);
  const traceId = match?.[1] ?? randomBytes(16).toString('hex');
  const flags = match?.[2] ?? '01';
  return `00-${traceId}-${randomBytes(8).toString('hex')}-${flags}`;
}

/** For a message sent now: the active span's context when tracing, else a fresh span id in the trace of `parent`. */
export function messageTraceparent(parent?: string): string {
  return traceparentOf() ?? childTraceparent(parent);
}

/**
 * For messages about a job whose span has context `traceparent`: that context itself when it is
 * a recorded span's (the receiver's spans hang under it), else a fresh span id in its trace.
 */
export function continuing(traceparent: string): string {
  return tracingOn() ? traceparent : childTraceparent(traceparent);
}
