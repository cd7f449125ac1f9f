// The cluster's NATS subjects, named in one place: events that every replica hears
// (`muster.evt.<kind>.<id>`) and the command channel of each replica (`muster.cmd.<replica_id>`).
import type { BusEvent } from '../bus/bus.js';

/** Every event of the cluster: what each replica's NatsBus subscribes to. */
export const EVENT_SUBJECTS = 'muster.evt.>';

const EVENT_PREFIX = 'muster.evt.';
const COMMAND_PREFIX = 'muster.cmd.';

/** `muster.evt.job.<job_id>`, `muster.evt.log.<job_id>`, `muster.evt.node.<node_id>`. */
export function eventSubject(event: BusEvent): string {
  const id = event.kind === 'node' ? event.node_id : event.job_id;
  return `${EVENT_PREFIX}${event.kind}.${subjectToken(id)}`;
}

/** The subject a replica serves its node commands on. */
export function commandSubject(replicaId: string): string {
  return `${COMMAND_PREFIX}${subjectToken(replicaId)}`;
}

/**
 * An id as one subject token. Node and job ids are UUIDs and pass unchanged; a replica id is
 * `<hostname>-<random>` by default, and a hostname has dots, which would split the token (and
 * `*`, `>` or spaces would be wildcards or break the protocol line). Every byte outside
 * `[A-Za-z0-9_-]` becomes `~XX` (hex), `~` included, so that two ids never share a token.
 */
export function subjectToken(id: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(id)) return id;
  let out = '';
  for (const byte of Buffer.from(id, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `~${byte.toString(16).padStart(2, '0')}`;
  }
  // An empty id would leave an empty token, which NATS refuses.
  return out === '' ? '~' : out;
}
