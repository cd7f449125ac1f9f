// The admin HTTP API as seen from the CLI: where it is (`--api` / MUSTER_API), which token to
// send (`--token` / MUSTER_TOKEN, else a 5-minute admin token minted with the local secret),
// JSON requests with one-line errors, and log follows over server-sent events.
import { Option, type Command } from 'commander';
import { loadConfig } from '../supervisor/config.js';
import type { LogRecord } from '../supervisor/admin/wire-types.js';
import { loadSecret, secretFromDataDir } from '../supervisor/tokens/secret.js';
import { TokenAuthority } from '../supervisor/tokens/tokens.js';
import { readSse } from './sse-reader.js';
import { checkApiToken } from './token-kind.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:7480';

const MINTED_TTL_SECONDS = 300;
/** A follow that drops (plane restart, proxy timeout) is resumed from the last chunk this often. */
const FOLLOW_RETRIES = 5;
const FOLLOW_RETRY_MS = 1_000;

/** The options every client command takes. */
export interface ClientOptions {
  api: string;
  token?: string;
  dataDir?: string;
}

/** Adds `--api`, `--token` and `--data-dir` to a client command. */
export function withClientOptions(command: Command): Command {
  return command
    .addOption(new Option('--api <url>', 'admin API base URL').env('MUSTER_API').default(DEFAULT_API_URL))
    .addOption(new Option('--token <jwt>', 'admin API token (default: minted from the local secret)').env('MUSTER_TOKEN'))
    .addOption(new Option('--data-dir <dir>', 'where to find the local secret when no token is given'));
}

/** How a follow ended: the `end` event's data. */
export interface FollowEnd {
  state: string;
  reason?: string;
}

export class ApiClient {
  readonly #base: string;
  readonly #token: string;

  constructor(baseUrl: string, token: string) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#token = token;
  }

  async get<T>(path: string): Promise<T> {
    return this.#json<T>('GET', path);
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    return this.#json<T>('POST', path, body);
  }

  /**
   * Streams a job's log chunks to `onChunk` until the job ends; resumes from the last chunk
   * seen when the stream drops, so nothing is shown twice or skipped.
   */
  async followLogs(jobId: string, onChunk: (chunk: LogRecord) => void): Promise<FollowEnd> {
    let lastId: string | undefined;
    let failures = 0;
    for (;;) {
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream' };
        if (lastId !== undefined) headers['last-event-id'] = lastId;
        const res = await this.#fetch('GET', `/v1/jobs/${encodeURIComponent(jobId)}/logs?follow=1`, headers);
        if (!res.ok) throw await answerError(res);
        if (res.body === null) throw new Error('the log stream has no body');
        for await (const event of readSse(res.body)) {
          failures = 0;
          if (event.event === 'end') return JSON.parse(event.data) as FollowEnd;
          if (event.id !== undefined) lastId = event.id;
          onChunk(JSON.parse(event.data) as LogRecord);
        }
        throw new Error('the log stream ended before the job did');
      } catch (err) {
        // A refusal (404, 401) will not get better by asking again; a 5xx or a dropped stream may.
        if ((err instanceof ApiAnswerError && err.status < 500) || ++failures > FOLLOW_RETRIES) throw err;
        await new Promise((resolve) => setTimeout(resolve, FOLLOW_RETRY_MS));
      }
    }
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.#fetch(method, path, headers, body === undefined ? undefined : JSON.stringify(body));
    if (!res.ok) throw await answerError(res);
    const text = await res.text();
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async #fetch(method: string, path: string, headers: Record<string, string>, body?: string): Promise<Response> {
    try {
      return await fetch(`${this.#base}${path}`, {
        method,
        headers: { ...headers, authorization: `Bearer ${this.#token}` },
        body,
      });
    } catch (err) {
      const cause = (err as { cause?: { message?: unknown } }).cause?.message;
      const detail = typeof cause === 'string' ? cause : err instanceof Error ? err.message : String(err);
      throw new Error(`cannot reach the admin API at ${this.#base}: ${detail}`);
    }
  }
}

/** An error answer of the API (`{error: {code, message}}`), as one line. */
export class ApiAnswerError extends Error {
  override readonly name = 'ApiAnswerError';
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

async function answerError(res: Response): Promise<ApiAnswerError> {
  const text = await res.text().catch(() => '');
  let message = `${res.status} ${res.statusText}`;
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.message === 'string') message = `${parsed.error.message} (${String(parsed.error.code)})`;
  } catch {
    // Not our JSON (a proxy's page): the status line says enough.
  }
  return new ApiAnswerError(res.status, message);
}

/** The client for a command's options; mints a short-lived admin token when none is given. */
export async function createApiClient(options: ClientOptions): Promise<ApiClient> {
  const given = options.token !== undefined && options.token !== '';
  if (given) checkApiToken(options.token!);
  const token = given ? options.token! : await mintLocalToken(options.dataDir);
  return new ApiClient(options.api, token);
}

async function mintLocalToken(dataDir: string | undefined): Promise<string> {
  const config = loadConfig({ overrides: { dataDir } });
  // loadSecret would create a secret when none exists; a client must only ever read one.
  const secret = config.jwtSecret !== '' ? loadSecret(config) : secretFromDataDir(config.dataDir);
  if (secret === undefined) {
    throw new Error(
      `no API token: pass --token or set MUSTER_TOKEN (or MUSTER_JWT_SECRET), or point --data-dir at the control plane's data directory (no secret in ${config.dataDir})`,
    );
  }
  return new TokenAuthority(secret).mintApiToken({ role: 'admin', ttlSeconds: MINTED_TTL_SECONDS, sub: 'muster-cli' });
}
