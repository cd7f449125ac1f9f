// Asking a draining node to take jobs again (`Undrain`), decided in one place for the API of the
// replica that holds the node and for a command from another replica (cluster/replica-duties.ts).
import { offersUndrain } from '../../actors/node-machine.js';
import type { UndrainOutcome } from '../admin/plane-api.js';
import type { NodeSession } from './node-session.js';

/** Sends `undrain` to the node's actor when it is draining and its agent offers the feature. */
export function undrainSession(session: NodeSession): Exclude<UndrainOutcome, 'not_connected'> {
  if (session.state !== 'draining') return 'not_draining';
  if (!offersUndrain(session.actor.getSnapshot().context)) return 'not_supported';
  session.actor.send({ type: 'undrain' });
  return 'requested';
}
