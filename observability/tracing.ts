// OpenTelemetry tracing for the plane and the agent, set up only from the standard OTEL_*
// variables: with no OTLP endpoint (or OTEL_SDK_DISABLED=true, or OTEL_TRACES_EXPORTER=none)
// nothing is loaded or registered, and every span call in the code stays the API's no-op.
// Spans are made by hand (spans.ts), so no module-patching loader is needed under tsx; fastify
// is traced by @fastify/otel, which is a plain plugin (`fastifyPlugin`).
import { readFileSync } from 'node:fs';
import { context, propagation, trace } from '@opentelemetry/api';
import type { FastifyPluginCallback } from 'fastify';
import { markTracingOn } from './spans.js';

/** What `startTracing` set up; `shutdown` flushes the spans not yet exported. */
export interface Tracing {
  /** The service name spans are exported under. */
  readonly serviceName: string;
  /** Where they go (the traces URL). */
  readonly endpoint: string;
  /** @fastify/otel's plugin, bound to this provider: register it before the routes. */
  fastifyPlugin(): FastifyPluginCallback;
  /** Sends the spans ended so far, now. */
  flush(): Promise<void>;
  /** Ends the exporter after sending what is buffered; a second call does nothing. */
  shutdown(): Promise<void>;
}

let current: Tracing | undefined;

/** The tracing this process started, if any: the admin API registers its fastify plugin. */
export function activeTracing(): Tracing | undefined {
  return current;
}

/** The traces URL the OTEL_* variables name, or undefined when tracing is off. */
export function tracesEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (truthy(env.OTEL_SDK_DISABLED)) return undefined;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim());
  if (exporters.includes('none')) return undefined;
  const traces = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  if (traces !== undefined) return traces;
  const base = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  // As the exporter itself resolves it (OpenTelemetry's OTLP exporter specification).
  return base === undefined ? undefined : `${base.replace(/\/+$/, '')}/v1/traces`;
}

/**
 * Starts tracing when the environment asks for it (see `tracesEndpoint`), else returns
 * undefined having loaded nothing. `serviceName` is the default of OTEL_SERVICE_NAME.
 */
export async function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<Tracing | undefined> {
  const endpoint = tracesEndpoint(env);
  if (endpoint === undefined) return undefined;
  const protocol = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_PROTOCOL) ?? 'http/protobuf';
  if (protocol !== 'http/protobuf') throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL "${protocol}" is not supported: muster exports traces as http/protobuf`);
  // Loaded only now: a process that does not trace pays nothing for the SDK.
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { OTLPTraceExporter }, resources, semconv, { FastifyOtelInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
    import('@fastify/otel'),
  ]);
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) win over the default name.
  const resource = resources
    .defaultResource()
    .merge(resources.resourceFromAttributes({ [semconv.ATTR_SERVICE_NAME]: serviceName, [semconv.ATTR_SERVICE_VERSION]: packageVersion() }))
    .merge(resources.detectResources({ detectors: [resources.envDetector] }));
  // The URL as resolved from `env`; the exporter reads headers, timeout and compression from the
  // process's environment itself, the provider OTEL_TRACES_SAMPLER(_ARG), the batch processor OTEL_BSP_*.
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }))] });
  // The global provider, the AsyncLocalStorage context manager and the W3C propagators.
  provider.register();
  const fastify = new FastifyOtelInstrumentation({
    // One span per request: a span per hook (the role check, the rate limit) and one for the
    // handler would only nest the work that matters (`job submit`) deeper.
    instrumentHooks: false,
    instrumentHandler: false,
    // Probes and scrapes every few seconds would bury the requests that matter.
    ignorePaths: ({ url }) => QUIET_PATHS.some((path) => url === path || url.startsWith(`${path}?`)),
    // "POST /v1/jobs", as HTTP's semantic conventions name a server span; the path without its query.
    requestHook: (span, request) => {
      span.updateName(`${request.method} ${request.routeOptions.url ?? 'unknown route'}`);
      span.setAttribute(semconv.ATTR_URL_PATH, request.url.split('?', 1)[0] ?? '');
    },
  });
  fastify.setTracerProvider(provider);
  markTracingOn(true);
  let stopped: Promise<void> | undefined;
  return (current = {
    serviceName: String(resource.attributes[semconv.ATTR_SERVICE_NAME] ?? serviceName),
    endpoint,
    fastifyPlugin: () => fastify.plugin(),
    flush: () => provider.forceFlush(),
    shutdown: () =>
      (stopped ??= (async () => {
        markTracingOn(false);
        current = undefined;
        await provider.shutdown();
        // The API's globals back to no-ops, so that a later start in this process (a test, an embedder) registers afresh.
        trace.disable();
        context.disable();
        propagation.disable();
      })()),
  });
}

const QUIET_PATHS = ['/healthz', '/readyz', '/metrics'];

/** The package's version, as `muster --version` tells it. */
function packageVersion(): string {
  const text = readFileSync(new URL('../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

function truthy(value: string | undefined): boolean {
  return value !== undefined && value.trim().toLowerCase() === 'true';
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
