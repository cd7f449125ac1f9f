// The control-plane URLs the agent is given, checked before it dials anything: a URL without a
// scheme (`127.0.0.1:7420`) or with one no transport serves (`http://...`, the admin API) can
// never connect, so it is refused at start with one line instead of retried for ever.

/** The schemes the agent dials, in the order the README lists the transports. */
export const AGENT_SCHEMES: readonly string[] = ['tcp', 'tls', 'unix', 'ws', 'wss', 'grpc', 'grpcs'];

const SCHEME_LIST = AGENT_SCHEMES.map((s) => `${s}://`).join(', ');

/** Throws an Error naming the first URL the agent cannot dial, and what it would take. */
export function checkPlaneUrls(urls: readonly string[]): void {
  for (const url of urls) {
    // `host:7420` parses as a URL of the scheme `host:`: a scheme counts only with `://` after it.
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
    if (scheme === undefined || !AGENT_SCHEMES.includes(scheme)) {
      const what = scheme === undefined ? 'has no scheme' : `has the scheme ${scheme}://`;
      const hint = scheme?.startsWith('http') === true ? ' (http:// is the admin API; nodes dial a node listener, by default tcp://HOST:7420)' : '';
      throw new Error(`--url ${url} ${what}: the agent dials ${SCHEME_LIST}${hint}`);
    }
    if (!URL.canParse(url)) throw new Error(`--url ${url} is not a valid URL`);
  }
}
