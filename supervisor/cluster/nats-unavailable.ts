// NATS failing to serve a request, told apart from every other failure: a timeout, a connection
// that is closed or away, no responders (no JetStream, or no replica listening on the subject).
// Those pass once NATS is back, so a replica's seams turn them into one MusterError: `internal`
// with `retryAfterMs` (the admin API answers it 503 with `Retry-After`, admin/api-errors.ts).
// Not `shutting_down`: that code is fatal on the node wire, and a job message whose write timed
// out must not end the node's session (the node keeps its result and sends it again). Its
// message is fixed text of ours: no library text reaches a client or a node.
import { errors } from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';
import { MusterError, toMusterError } from '../../protocol/errors.js';

export type NatsTrouble = 'timeout' | 'disconnected' | 'no_responders';

/**
 * How deep a cause chain is searched: a MusterError wrapping a JetStream error wrapping the
 * request's (JetStream's "not enabled" carries the no-responders RequestError as its cause).
 */
const MAX_CAUSES = 5;

/** About when NATS may answer again: nats.js reconnects every 2 s (nats-connection.ts), a timeout is 2 s. */
export const NATS_RETRY_AFTER_MS = 2_000;

/** JetStream's own 503 ("JetStream system temporarily unavailable": no leader, a server restarting). */
const JS_UNAVAILABLE_STATUS = 503;

/** What kind of NATS unavailability `err` (or an error in its cause chain) is; undefined when it is none. */
export function natsTrouble(err: unknown): NatsTrouble | undefined {
  let at: unknown = err;
  for (let depth = 0; depth < MAX_CAUSES && at instanceof Error; depth++, at = at.cause) {
    if (at instanceof errors.TimeoutError) return 'timeout';
    if (at instanceof errors.ClosedConnectionError || at instanceof errors.DrainingConnectionError || at instanceof errors.ConnectionError) return 'disconnected';
    if (at instanceof errors.NoRespondersError || (at instanceof errors.RequestError && at.isNoResponders())) return 'no_responders';
    if (at instanceof JetStreamApiError && at.status === JS_UNAVAILABLE_STATUS) return 'no_responders';
  }
  return undefined;
}

const WHY: Record<NatsTrouble, string> = {
  timeout: 'NATS did not answer in time',
  disconnected: 'this replica is not connected to NATS',
  no_responders: 'nothing on NATS answered (JetStream or the replica asked is not there)',
};

/** The MusterError of one kind of trouble while doing `what` ("read the job store"). */
export function unavailable(trouble: NatsTrouble, what: string, cause?: unknown): MusterError {
  return new MusterError('internal', `cannot ${what} now: ${WHY[trouble]}; try again shortly`, { cause, retryAfterMs: NATS_RETRY_AFTER_MS });
}

/**
 * For a seam's catch-all: NATS unavailability becomes `unavailable(...)` (also under an `internal`
 * MusterError that wrapped it); any other MusterError stays as it is; anything else becomes
 * `internal` without its text (protocol/errors.ts).
 */
export function toClusterError(err: unknown, what: string): MusterError {
  if (err instanceof MusterError && (err.code !== 'internal' || err.retryAfterMs !== undefined)) return err;
  const trouble = natsTrouble(err);
  return trouble === undefined ? toMusterError(err) : unavailable(trouble, what, err);
}
