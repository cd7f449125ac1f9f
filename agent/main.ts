// `muster agent` behind the CLI: builds the agent from the command's options and ties
// it to the process's signals. The first SIGTERM or SIGINT drains (running jobs finish
// while the agent keeps heartbeating, then it deregisters and exits 0); a second one
// kills the jobs and exits at once. A refusal no retry can change (a bad token, a URL that
// is not a node listener) is one line on stderr and exit status 1.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import type { CodecName } from '../protocol/codec.js';
import { AgentMetrics } from '../observability/agent-metrics.js';
import { createLogger } from '../observability/logger.js';
import { startMetricsServer, type MetricsServer } from '../observability/metrics-server.js';
import { startTracing } from '../observability/tracing.js';
import '../transports/builtin.js';
import { startAgent, type Agent, type AgentOptions } from './agent.js';

export interface AgentCommandOptions {
  urls: string[];
  token: string;
  workDir: string;
  codec?: CodecName | undefined;
  tags?: Record<string, string> | undefined;
  logLevel?: string | undefined;
  /** Where to serve the agent's Prometheus metrics (`GET /metrics`); default: not served. */
  metrics?: { host: string; port: number };
  /** Default: a logger from observability/logger.ts at `logLevel`. */
  logger?: Logger;
  /** Default `process.exit`; injectable for tests. */
  exit?: (code: number) => void;
  /** Further agent settings (timeouts, limits), mainly for tests. */
  agent?: Partial<AgentOptions>;
}

/**
 * The agent's own logger. Off a terminal it writes synchronously: with pino's default
 * asynchronous stdout, lines still queued at exit are flushed by a loop that retries a write to
 * a closed pipe (`muster agent | head -8`) every 100 ms for ever, so the agent never exited.
 * A synchronous write meets EPIPE at once, and pino then stops writing.
 */
function agentLogger(level: string | undefined): Logger {
  const destination = process.stdout.isTTY ? {} : { destination: pino.destination({ dest: 1, sync: true }) };
  return createLogger({ name: 'muster-agent', ...(level === undefined ? {} : { level }), ...destination });
}

async function serveMetrics(metrics: AgentMetrics, at: { host: string; port: number }): Promise<MetricsServer> {
  try {
    return await startMetricsServer(metrics.registry, at.host, at.port);
  } catch (err) {
    throw new Error(`cannot serve metrics at ${at.host}:${at.port}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const SIGNAL_EXIT_CODES: Record<'SIGTERM' | 'SIGINT', number> = { SIGTERM: 143, SIGINT: 130 };

/** Runs the agent until a signal ends it; resolves once it has drained (just before exit). */
export async function runAgentCommand(opts: AgentCommandOptions): Promise<Agent> {
  const logger = opts.logger ?? agentLogger(opts.logLevel);
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const workDir = resolve(opts.workDir);
  mkdirSync(workDir, { recursive: true });
  // Bound before the agent starts: a taken port ends the command before it dials anyone.
  const metrics = opts.metrics === undefined ? undefined : new AgentMetrics();
  const server = metrics === undefined ? undefined : await serveMetrics(metrics, opts.metrics!);
  // Only with an OTLP endpoint in the OTEL_* variables; its spans are flushed before the agent exits.
  const tracing = await startTracing('muster-agent');
  if (tracing !== undefined) logger.info({ endpoint: tracing.endpoint, service_name: tracing.serviceName }, 'exporting traces');
  const agent = startAgent({
    urls: opts.urls,
    token: opts.token,
    workDir,
    codec: opts.codec ?? 'msgpack',
    tags: opts.tags ?? {},
    logger,
    ...(metrics === undefined ? {} : { metrics }),
    ...opts.agent,
  });
  logger.info({ urls: opts.urls, work_dir: workDir, metrics: server?.url }, 'agent started');
  void agent.failed.then(async (reason) => {
    process.stderr.write(`muster: ${reason}\n`);
    await tracing?.shutdown();
    exit(1);
  });
  return new Promise((done) => {
    let signalled = false;
    const onSignal = (signal: 'SIGTERM' | 'SIGINT'): void => {
      if (signalled) {
        logger.warn({ signal }, 'second signal; killing jobs and exiting now');
        void agent.stop();
        exit(SIGNAL_EXIT_CODES[signal]);
        return;
      }
      signalled = true;
      logger.info({ signal }, 'draining: finishing running jobs, taking no new ones (signal again to exit now)');
      void agent.drain().then(async () => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        await server?.close();
        await tracing?.shutdown();
        done(agent);
        exit(0);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
