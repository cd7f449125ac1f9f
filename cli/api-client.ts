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
/** How long a waiting command keeps trying to reach a plane that went away (a restart). */
export const DEFAULT_RECONNECT_WINDOW = '60s';
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 2_000;

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

/** What a waiting command is told while the plane cannot be reached. */
export interface ConnectionNotice {
  /** `lost`: the first failure; `back`: answered again after a loss. */
  kind: 'lost' | 'back';
  /** Why it was lost (`lost` only). */
  detail?: string;
}

export interface ApiClientOptions {
  /**
   * How long `retrying` and `followLogs` keep trying an unreachable plane (refused
   * connections, 5xx, a dropped stream) before they give up; 0: not at all.
   */
  reconnectWindowMs?: number;
  onConnection?: (notice: ConnectionNotice) => void;
}

export class ApiClient {
  readonly #base: string;
  readonly #token: () => Promise<string>;
  readonly #windowMs: number;
  readonly #notify: (notice: ConnectionNotice) => void;
  /** When the plane stopped answering; undefined while it answers. */
  #lostSince: number | undefined;

  /** `token`: a token, or where to get a fresh one before each request (a self-minted one ages). */
  constructor(baseUrl: string, token: string | (() => Promise<string>), options: ApiClientOptions = {}) {
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#token = typeof token === 'string' ? async () => token : token;
    this.#windowMs = options.reconnectWindowMs ?? 0;
    this.#notify = options.onConnection ?? (() => undefined);
  }

  async get<T>(path: string): Promise<T> {
    return this.#json<T>('GET', path);
  }

  async post<T>(path: string, body?: unknown): Promise<T> {
    return this.#json<T>('POST', path, body);
  }

  /** A GET whose body the caller streams (an artifact's bytes); a refusal is thrown as for `get`. */
  async stream(path: string): Promise<Response> {
    const res = await this.#fetch('GET', path, {});
    if (!res.ok) throw await answerError(res);
    return res;
  }

  /**
   * Runs `request` until it succeeds; a transient failure (the plane unreachable or
   * answering 5xx) is retried with backoff for up to the reconnect window, counted from
   * the first failure. A refusal (4xx) is thrown at once: asking again will not help.
   */
  async retrying<T>(request: () => Promise<T>): Promise<T> {
    let delayMs = RETRY_FIRST_MS;
    for (;;) {
      try {
        const value = await request();
        this.#answered();
        return value;
      } catch (err) {
        this.#failed(err);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
      }
    }
  }

  /**
   * Streams a job's log chunks to `onChunk` until the job ends: first what the job has
   * written so far, then what it writes. A dropped stream (a plane restart, a proxy
   * timeout) is resumed after the last chunk seen (`Last-Event-ID`), within the reconnect
   * window, so nothing is shown twice or skipped.
   */
  async followLogs(jobId: string, onChunk: (chunk: LogRecord) => void | Promise<void>): Promise<FollowEnd> {
    let lastId: string | undefined;
    return this.retrying(async () => {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (lastId !== undefined) headers['last-event-id'] = lastId;
      const res = await this.#fetch('GET', `/v1/jobs/${encodeURIComponent(jobId)}/logs?follow=1`, headers);
      if (!res.ok) throw await answerError(res);
      if (res.body === null) throw new StreamDropped('the log stream has no body');
      this.#answered();
      try {
        for await (const event of readSse(res.body)) {
          if (event.event === 'end') return JSON.parse(event.data) as FollowEnd;
          if (event.id !== undefined) lastId = event.id;
          await onChunk(JSON.parse(event.data) as LogRecord);
        }
      } catch (err) {
        // undici reports a body cut off mid-stream as a TypeError ("terminated").
        throw err instanceof TypeError ? new StreamDropped(detailOf(err)) : err;
      }
      throw new StreamDropped('the log stream ended before the job did');
    });
  }

  /** A transient failure within the window is noted and returned to; anything else is thrown. */
  #failed(err: unknown): void {
    if (!isTransient(err) || this.#windowMs <= 0) throw err;
    const now = Date.now();
    if (this.#lostSince === undefined) {
      this.#lostSince = now;
      this.#notify({ kind: 'lost', detail: err instanceof Error ? err.message : String(err) });
    } else if (now - this.#lostSince > this.#windowMs) {
      throw err;
    }
  }

  #answered(): void {
    if (this.#lostSince === undefined) return;
    this.#lostSince = undefined;
    this.#notify({ kind: 'back' });
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
    const token = await this.#token();
    try {
      return await fetch(`${this.#base}${path}`, {
        method,
        headers: { ...headers, authorization: `Bearer ${token}` },
        body,
      });
    } catch (err) {
      const detail = detailOf(err);
      throw new Unreachable(`cannot reach the admin API at ${this.#base}: ${detail}`);
    }
  }
}

/** The plane did not answer at all (connection refused, reset, DNS). */
export class Unreachable extends Error {
  override readonly name = 'Unreachable';
}

/** A log stream that broke off before its `end` event. */
class StreamDropped extends Error {
  override readonly name = 'StreamDropped';
}

function isTransient(err: unknown): boolean {
  return err instanceof Unreachable || err instanceof StreamDropped || (err instanceof ApiAnswerError && err.status >= 500);
}

function detailOf(err: unknown): string {
  const cause = (err as { cause?: { message?: unknown } }).cause?.message;
  return typeof cause === 'string' ? cause : err instanceof Error ? err.message : String(err);
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
export async function createApiClient(options: ClientOptions, clientOptions: ApiClientOptions = {}): Promise<ApiClient> {
  if (options.token !== undefined && options.token !== '') {
    checkApiToken(options.token);
    return new ApiClient(options.api, options.token, clientOptions);
  }
  const mint = await localMinter(options.dataDir);
  // A waiting command may outlive one minted token: a fresh one is minted well before expiry.
  let minted = { token: await mint(), at: Date.now() };
  const token = async (): Promise<string> => {
    if (Date.now() - minted.at > (MINTED_TTL_SECONDS * 1000) / 2) minted = { token: await mint(), at: Date.now() };
    return minted.token;
  };
  return new ApiClient(options.api, token, clientOptions);
}

async function localMinter(dataDir: string | undefined): Promise<() => Promise<string>> {
  const config = loadConfig({ overrides: { dataDir } });
  // loadSecret would create a secret when none exists; a client must only ever read one.
  const secret = config.jwtSecret !== '' ? loadSecret(config) : secretFromDataDir(config.dataDir);
  if (secret === undefined) {
    throw new Error(
      `no API token: pass --token or set MUSTER_TOKEN (or MUSTER_JWT_SECRET), or point --data-dir at the control plane's data directory (no secret in ${config.dataDir})`,
    );
  }
  const authority = new TokenAuthority(secret);
  return () => authority.mintApiToken({ role: 'admin', ttlSeconds: MINTED_TTL_SECONDS, sub: 'muster-cli' });
}
