// A replica started before its NATS is up, or before JetStream answers (a server still starting,
// a NATS cluster still electing its JetStream leader), waits for them rather than exiting at
// once: under docker compose, Kubernetes or one systemd target the two start together, and a
// restart loop would only add noise and back-off. Only what passes by itself is waited out: a
// connection refused or reset, a name that does not resolve yet, a timeout, no responders.
// Bad credentials, a TLS failure, or a refusal of the replica's own (another cluster format)
// fail at once, as before.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MusterError } from '../../protocol/errors.js';
import { natsTrouble } from './nats-unavailable.js';

const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 5_000;

/** Socket errors of a server that is not there yet, as opposed to one that refuses us. */
const NOT_UP_YET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);

/** How deep a cause chain is searched for the socket error (ours, nats.js's, Node's). */
const MAX_CAUSES = 5;

export interface StartupWait {
  /** How long after the first try the replica gives up (`natsStartupWaitMs`); 0: at the first failure. */
  waitMs: number;
  /** The servers, for the log lines and the final error. */
  nats: string;
  log: Pick<Logger, 'warn'>;
}

/** `start()`, tried again with growing pauses while NATS or JetStream is not answering yet, until `waitMs` has passed. */
export async function whenNatsAnswers<T>(start: () => Promise<T>, o: StartupWait): Promise<T> {
  const since = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      const why = notAnsweringYet(err);
      if (why === undefined) throw err;
      const waited = Date.now() - since;
      if (waited >= o.waitMs) {
        const after = o.waitMs > 0 ? ` within ${Math.round(waited / 1000)} s of start (natsStartupWaitMs)` : '';
        throw new MusterError('internal', `NATS at ${o.nats} did not answer${after}: ${why}`, { cause: err });
      }
      const retryMs = Math.min(FIRST_RETRY_MS * 2 ** (attempt - 1), LONGEST_RETRY_MS, o.waitMs - waited);
      o.log.warn({ nats: o.nats, why, attempt, waited_ms: waited, retry_in_ms: retryMs }, 'waiting for NATS and JetStream to answer');
      await delay(retryMs);
    }
  }
}

/** Why `err` is NATS not answering yet (a sentence for the log), or undefined when it will not pass by itself. */
function notAnsweringYet(err: unknown): string | undefined {
  switch (natsTrouble(err)) {
    case 'timeout':
      return 'a request to NATS timed out';
    case 'no_responders':
      return 'JetStream does not answer (the server is still starting, or runs without JetStream: nats-server -js)';
    case 'disconnected':
      return socketCode(err) === undefined ? undefined : (err as Error).message;
    default:
      return undefined;
  }
}

function socketCode(err: unknown): string | undefined {
  let at: unknown = err;
  for (let depth = 0; depth < MAX_CAUSES && at instanceof Error; depth++, at = at.cause) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && NOT_UP_YET.has(code)) return code;
  }
  return undefined;
}
