// Reads a JSON configuration file (the plane's `--config`, the agent's `--config`): a file that
// does not parse is named in the error with the line and column where the parser stopped.
import { readFileSync } from 'node:fs';

/** The parsed contents of `file`; throws an Error naming the file (and line) when it is not valid JSON. */
export function readJsonFile(file: string): unknown {
  const text = readFileSync(file, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`config file ${file}${where(text, message)}: not valid JSON (${message.replace(/ in JSON at position \d+.*$/, '')})`);
  }
}

/** `, line L column C` of the parser's position, when its message has one. */
function where(text: string, message: string): string {
  const position = /at position (\d+)/.exec(message)?.[1];
  const offset = position !== undefined ? Number(position) : /Unexpected end/.test(message) ? text.length : undefined;
  if (offset === undefined) return '';
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return `, line ${line} column ${column}`;
}
