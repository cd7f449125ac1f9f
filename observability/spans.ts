// The spans every part makes by hand, on the OpenTelemetry API only (tracing.ts sets up the
// SDK behind it, or nothing). While tracing is off these calls cost a flag check: no span,
// context or carrier is made, so the hot paths (every job message) stay as they were.
// A span's context crosses processes as a W3C `traceparent` (the envelope's field, a NATS header).
import {
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';

export { SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';

/** The messaging semantic conventions' attribute names (stable names, not imported from the incubating entry point). */
export const MESSAGING = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destination: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  bodySize: 'messaging.message.body.size',
} as const;

/** Muster's own attributes. */
export const MUSTER = {
  jobId: 'muster.job.id',
  attempt: 'muster.job.attempt',
  priority: 'muster.job.priority',
  nodeId: 'muster.node.id',
  replica: 'muster.control_plane.id',
  outcome: 'muster.outcome',
  /** A result's status (`Completed`, `Failed`, ...). */
  status: 'muster.job.status',
  resumed: 'muster.node.resumed',
  connectionId: 'muster.connection.id',
  closeReason: 'muster.close_reason',
} as const;

let on = false;
// Taken when tracing starts: a tracer taken earlier would stay bound to the provider of an
// earlier start in this process (the API's proxy is replaced when tracing is shut down).
let tracer = trace.getTracer('muster');
const NO_SPAN: Span = trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 });

/** Set by tracing.ts once a provider is registered (and cleared at its shutdown). */
export function markTracingOn(value: boolean): void {
  on = value;
  if (value) tracer = trace.getTracer('muster');
}

/** Whether spans are recorded at all in this process. */
export function tracingOn(): boolean {
  return on;
}

/** `{trace_id, span_id}` of the active span for a log line (pino's mixin); empty when none. */
export function activeSpanIds(): Record<string, string> {
  // A new object each time: pino merges the line's fields into what a mixin returns.
  if (!on) return {};
  const span = trace.getSpanContext(context.active());
  if (span === undefined || !isSpanContextValid(span)) return {};
  return { trace_id: span.traceId, span_id: span.spanId };
}

/** The context a `traceparent` names; undefined when there is none (or tracing is off). */
export function contextOf(traceparent: string | undefined): Context | undefined {
  if (!on || traceparent === undefined) return undefined;
  const extracted = propagation.extract(ROOT_CONTEXT, { traceparent });
  return trace.getSpanContext(extracted) === undefined ? undefined : extracted;
}

/** The `traceparent` of `span`, or of the active span; undefined when none is recording. */
export function traceparentOf(span?: Span): string | undefined {
  if (!on) return undefined;
  const ctx = span === undefined ? context.active() : trace.setSpan(context.active(), span);
  if (trace.getSpan(ctx)?.spanContext().traceFlags === undefined) return undefined;
  const carrier: { traceparent?: string } = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent;
}

/**
 * Starts a span under `parent` (a `traceparent`, a context, or by default the active context).
 * The caller ends it. While tracing is off, a shared span that records nothing.
 */
export function startSpan(name: string, options: SpanOptions = {}, parent?: string | Context): Span {
  if (!on) return NO_SPAN;
  const ctx = typeof parent === 'string' ? (contextOf(parent) ?? context.active()) : (parent ?? context.active());
  return tracer.startSpan(name, options, ctx);
}

/**
 * Runs `fn` in a new span (active while it runs, so spans and log lines inside are its
 * children), ending it when `fn` returns or its promise settles; a throw or rejection marks it
 * an error. While tracing is off, only `fn` runs.
 */
export function inSpan<T>(name: string, options: SpanOptions, parent: string | Context | undefined, fn: (span: Span) => T): T {
  if (!on) return fn(NO_SPAN);
  const span = startSpan(name, options, parent);
  const ctx = trace.setSpan(typeof parent === 'object' ? parent : context.active(), span);
  let result: T;
  try {
    result = context.with(ctx, fn, undefined, span);
  } catch (err) {
    failSpan(span, err);
    span.end();
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (value: unknown) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        failSpan(span, err);
        span.end();
        throw err;
      },
    ) as T;
  }
  span.end();
  return result;
}

/** Runs `fn` outside any span: for work that serves many traces, woken from inside one of them. */
export function outsideSpans<T>(fn: () => T): T {
  if (!on) return fn();
  return context.with(ROOT_CONTEXT, fn);
}

/** Runs `fn` with `span` active (for work that continues a span started elsewhere). */
export function withSpan<T>(span: Span, fn: () => T): T {
  if (!on) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Marks `span` failed with `err`'s message (its code when it has one); never its stack's data. */
export function failSpan(span: Span, err: unknown): void {
  if (!on) return;
  const message = err instanceof Error ? err.message : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') span.setAttribute('error.type', code);
}

/** The attributes of a message of the node protocol: `messaging.*` with the message type as the destination. */
export function messageAttributes(operation: 'send' | 'process', type: string, extra: Attributes = {}): Attributes {
  return { [MESSAGING.system]: 'muster', [MESSAGING.operationType]: operation, [MESSAGING.destination]: type, ...extra };
}

/** `send <type>` as a producer span, `process <type>` as a consumer one (the messaging conventions' names). */
export function messageSpanOptions(operation: 'send' | 'process', type: string, extra: Attributes = {}): SpanOptions {
  return { kind: operation === 'send' ? SpanKind.PRODUCER : SpanKind.CONSUMER, attributes: messageAttributes(operation, type, extra) };
}
