// Tracing set up from the OTEL_* variables only: which settings turn it on and where it sends;
// with no endpoint (or the SDK disabled) nothing is registered and every span call is a no-op;
// once on, log lines written in a span carry its ids; shutdown turns everything off again.
import { Writable } from 'node:stream';
import { propagation, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../observability/logger.js';
import { activeSpanIds, inSpan, startSpan, traceparentOf, tracingOn } from '../../observability/spans.js';
import { activeTracing, startTracing, tracesEndpoint } from '../../observability/tracing.js';
import { OtlpReceiver } from './otlp-receiver.js';

describe('tracesEndpoint', () => {
  it('is off with no endpoint, and when the SDK or the trace exporter is turned off', () => {
    expect(tracesEndpoint({})).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: '' })).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
  });

  it('appends /v1/traces to the base endpoint, and takes the traces endpoint as it is', () => {
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })).toBe('http://c:4318/v1/traces');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:9/x' })).toBe('http://t:9/x');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'false' })).toBe('http://c:4318/v1/traces');
  });
});

describe('with no endpoint', () => {
  it('sets nothing up: no provider, no propagator, no spans, no ids on log lines', async () => {
    expect(await startTracing('muster', {})).toBeUndefined();
    expect(await startTracing('muster', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_SDK_DISABLED: 'TRUE' })).toBeUndefined();
    expect(activeTracing()).toBeUndefined();
    expect(tracingOn()).toBe(false);
    expect(propagation.fields()).toEqual([]);
    expect(trace.getTracer('any').startSpan('x').isRecording()).toBe(false);
    const span = startSpan('job submit');
    expect(span.isRecording()).toBe(false);
    expect(inSpan('job run', {}, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', () => traceparentOf())).toBeUndefined();
    expect(activeSpanIds()).toEqual({});
  });

  it('refuses an OTLP protocol it does not speak, rather than send where nothing listens', async () => {
    await expect(startTracing('muster', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).rejects.toThrow(/http\/protobuf/);
    expect(tracingOn()).toBe(false);
  });
});

describe('with an endpoint', () => {
  let receiver: OtlpReceiver;
  beforeAll(async () => {
    receiver = await OtlpReceiver.start();
  });
  afterAll(async () => {
    await receiver.close();
  });

  it('traces, puts trace_id and span_id on the lines logged in a span, and is all off again after shutdown', async () => {
    const tracing = await startTracing('muster-test', { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url });
    expect(tracing?.endpoint).toBe(`${receiver.url}/v1/traces`);
    expect(activeTracing()).toBe(tracing);
    const chunks: string[] = [];
    const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, done) => (chunks.push(c.toString()), done()) }) });
    const ids = inSpan('job submit', {}, undefined, (span) => {
      logger.info('inside');
      return span.spanContext();
    });
    logger.info('outside');
    const [inside, outside] = chunks.map((c) => JSON.parse(c) as Record<string, unknown>);
    expect(inside).toMatchObject({ msg: 'inside', trace_id: ids.traceId, span_id: ids.spanId });
    expect(outside).not.toHaveProperty('trace_id');
    await tracing?.shutdown();
    // Flushed at shutdown, under the given service name.
    expect(receiver.spans).toMatchObject([{ name: 'job submit', service: 'muster-test', traceId: ids.traceId, spanId: ids.spanId }]);
    expect(tracingOn()).toBe(false);
    expect(activeTracing()).toBeUndefined();
    expect(propagation.fields()).toEqual([]);
    expect(startSpan('after').isRecording()).toBe(false);
  });
});
