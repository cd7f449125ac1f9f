// The one structured logger every part uses: JSON lines (pino), pretty on an interactive terminal.
// Secrets and tokens are redacted here, once, so no call site has to remember to.
// A line written while a span is active carries its `trace_id` and `span_id` (OpenTelemetry's
// log correlation field names), so a backend can jump from a line to its trace.
// Callers add context with child loggers: `logger.child({ conn_id })`, `.child({ node_id })`,
// `.child({ job_id })`, so every line about a connection, node or job can be filtered by that field.
import { pino } from 'pino';
import type { Logger } from 'pino';
import pinoPretty from 'pino-pretty';
import { activeSpanIds } from './spans.js';

export type { Logger } from 'pino';

/** The levels `--log-level` and MUSTER_LOG_LEVEL take, most severe first. */
export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  /** pino level (`trace` … `fatal`, `silent`); default MUSTER_LOG_LEVEL, else `info`. */
  level?: string;
  /** Written as the `name` field of every line. */
  name?: string;
  /** Where JSON lines go; default stdout (pretty-printed when stdout is a TTY). */
  destination?: NodeJS.WritableStream | pino.DestinationStream;
}

/**
 * Paths replaced by `[Redacted]`: the protocol's token fields at the top level and one level down
 * (e.g. a logged message's `data.auth_token`), job secrets, and HTTP authorization headers.
 */
export const REDACT_PATHS: readonly string[] = [
  'auth_token',
  'session_token',
  'token',
  'secret',
  'secrets',
  'authorization',
  'headers.authorization',
  '*.auth_token',
  '*.session_token',
  '*.token',
  '*.secret',
  '*.secrets',
  '*.authorization',
  '*.headers.authorization',
  '*.*.secrets',
];

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? nonEmpty(process.env.MUSTER_LOG_LEVEL) ?? 'info';
  // pino's own message for an unknown level ("default level:x must be included in custom levels") names no setting.
  if (!LOG_LEVELS.includes(level)) throw new Error(`unknown log level "${level}" (--log-level, MUSTER_LOG_LEVEL): one of ${LOG_LEVELS.join(', ')}`);
  const settings = {
    level,
    redact: { paths: [...REDACT_PATHS] },
    mixin: activeSpanIds,
    ...(options.name === undefined ? {} : { name: options.name }),
  };
  if (options.destination !== undefined) return pino(settings, options.destination);
  // In-process stream rather than a worker transport: no extra thread, nothing lost on exit.
  if (process.stdout.isTTY) return pino(settings, pinoPretty({ colorize: true, sync: true }));
  return pino(settings);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
