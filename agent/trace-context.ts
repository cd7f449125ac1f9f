// W3C trace context for the agent's messages: a message about a job carries the context of its
// JobAssignment (unchanged while the agent records no span of its own); anything else starts a trace.
// While the agent traces (observability/tracing.ts), messages carry its real spans' contexts
// instead (messageTraceparent), and a job's messages its `job run` span's.
import { randomBytes } from 'node:crypto';
import { traceparentOf } from '../observability/spans.js';

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;

/** A `traceparent` with a fresh span id, in the trace of `parent` when that is valid. */
export function childTraceparent(parent?: string): string {
  const match = parent === undefined ? null : TRACEPARENT.exec(parent);
  const traceId = match?.[1] ?? randomBytes(16).toString('hex');
  const flags = match?.[2] ?? '01';
  return `00-${traceId}-${randomBytes(8).toString('hex')}-${flags}`;
}

/**
 * For a message sent now: the active span's context while tracing; else `parent` unchanged (a
 * process that records no span passes the context on as W3C allows, so the receiver's spans
 * hang under the sender's last real one), or a fresh one when there is none.
 */
export function messageTraceparent(parent?: string): string {
  return traceparentOf() ?? parent ?? childTraceparent();
}
