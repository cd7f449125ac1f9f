// A pino logger for tests that start a plane in this process: its lines, parsed, to wait on
// (`nextEvent(lines, ...)`) and to look through afterwards (`all`).
import { pino, type Logger } from 'pino';
import type { Subscribable } from './await-event.js';

export type LogLine = Record<string, unknown>;

export function capturedLogger(): { logger: Logger; lines: Subscribable<LogLine>; all: LogLine[] } {
  const all: LogLine[] = [];
  const handlers = new Set<(line: LogLine) => void>();
  const logger = pino(
    { level: 'info' },
    {
      write: (text: string) => {
        const line = JSON.parse(text) as LogLine;
        all.push(line);
        handlers.forEach((h) => h(line));
      },
    },
  );
  return { logger, all, lines: { subscribe: (h) => (handlers.add(h), () => handlers.delete(h)) } };
}
