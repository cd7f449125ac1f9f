// OpenTelemetry over NATS, by hand (no maintained NATS instrumentation exists): a message sent
// inside a span carries that span's context in its `traceparent` header and gets a producer span
// of its own (`send <subject template>`); the receiver handles it in a consumer span
// (`process <subject template>`) under the context the header carries. Attributes follow the
// messaging semantic conventions with `messaging.system = "nats"`. While tracing is off the
// header is what it always was (the caller's, else a fresh one) and no span is made.
import { inSpan, MESSAGING, SpanKind, tracingOn, traceparentOf, type Span } from '../../observability/spans.js';
import { isTraceparent, newTraceparent } from './traceparent.js';

/** The attributes of a NATS message span. */
function natsAttributes(operation: 'send' | 'process', subject: string, bytes: number): Record<string, string | number> {
  return {
    [MESSAGING.system]: 'nats',
    [MESSAGING.operationType]: operation,
    [MESSAGING.operationName]: operation === 'send' ? 'publish' : 'process',
    [MESSAGING.destination]: subject,
    [MESSAGING.bodySize]: bytes,
  };
}

/**
 * Runs `send(traceparent)` for a message to `subject`: in a `send <template>` producer span when
 * tracing and a span is active (or `parent` is given), the header then naming that span; else
 * with `parent` when valid, or a fresh context (not sampled while tracing: no span recorded it).
 */
export function sending<T>(template: string, subject: string, bytes: number, parent: string | undefined, send: (traceparent: string) => T): T {
  const given = isTraceparent(parent) ? parent : undefined;
  if (!tracingOn() || (given === undefined && traceparentOf() === undefined)) {
    return send(given ?? newTraceparent(!tracingOn()));
  }
  const options = { kind: SpanKind.PRODUCER, attributes: natsAttributes('send', subject, bytes) };
  return inSpan(`send ${template}`, options, given, (span: Span) => send(traceparentOf(span) ?? given ?? newTraceparent(false)));
}

/**
 * Runs `handle` for a message heard on `subject` with header `traceparent`: in a `process
 * <template>` consumer span under it when tracing (recorded only when that context is sampled).
 */
export function processing<T>(template: string, subject: string, bytes: number, traceparent: string | undefined, handle: () => T): T {
  if (!tracingOn() || !isTraceparent(traceparent)) return handle();
  return inSpan(`process ${template}`, { kind: SpanKind.CONSUMER, attributes: natsAttributes('process', subject, bytes) }, traceparent, handle);
}
