// The admin API from the page: the token (from the URL fragment, kept for the tab in
// sessionStorage), JSON requests with it as a bearer header, the live feed (EventSource, whose
// token goes in a cookie scoped to /v1/events: it cannot send headers), and log follows (a
// fetch stream, which can).

const STORE_KEY = 'muster.token';

/** Takes `#token=...` out of the address bar into the tab's storage; returns the token. */
export function adoptToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match !== null) {
    sessionStorage.setItem(STORE_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, '', `${location.pathname}#/fleet`);
  }
  const token = sessionStorage.getItem(STORE_KEY) ?? '';
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `muster_token=${encodeURIComponent(token)}; Path=/v1/events; SameSite=Strict${secure}`;
  return token;
}

/** @param {string} token */
export function setToken(token) {
  sessionStorage.setItem(STORE_KEY, token);
  adoptToken();
}

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * A JSON request to the admin API.
 * @param {string} method @param {string} path
 * @returns {Promise<any>}
 */
export async function api(method, path) {
  const token = sessionStorage.getItem(STORE_KEY) ?? '';
  const res = await fetch(path, { method, headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let body;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const error = body?.error ?? {};
    throw new ApiError(res.status, String(error.code ?? res.status), String(error.message ?? res.statusText));
  }
  return body;
}

/**
 * Follows a job's logs; calls `onChunk` per chunk and `onEnd` at the end. Returns a stop function.
 * @param {string} jobId
 * @param {(chunk: {attempt: number, stream: string, seq: number, data: string}) => void} onChunk
 * @param {(end: {state: string, reason?: string} | Error) => void} onEnd
 */
export function followLogs(jobId, onChunk, onEnd) {
  const controller = new AbortController();
  const token = sessionStorage.getItem(STORE_KEY) ?? '';
  (async () => {
    const res = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/logs?follow=1`, {
      headers: { authorization: `Bearer ${token}` },
      signal: controller.signal,
    });
    if (!res.ok || res.body === null) throw new ApiError(res.status, String(res.status), `logs: ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (data === '') continue;
        if (event === 'end') onEnd(JSON.parse(data));
        else onChunk(JSON.parse(data));
      }
    }
  })().catch((err) => {
    if (!controller.signal.aborted) onEnd(err instanceof Error ? err : new Error(String(err)));
  });
  return () => controller.abort();
}
