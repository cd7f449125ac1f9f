// What the agent says when the control plane refuses its registration token: the refusals
// that no retry can change (PROTOCOL.md section 4: `auth_failed`, `token_expired`,
// `token_revoked`, `forbidden`), each as one line that says what to do about it.
import type { MessageData } from '../protocol/messages.js';

const MINT = 'mint one with `muster token create --role node` and pass it with --token or MUSTER_AGENT_TOKEN';

const ADVICE: Record<string, string> = {
  auth_failed: `the registration token is not one this control plane accepts; ${MINT}`,
  token_expired: `the registration token has expired; ${MINT}`,
  token_revoked: `the registration token was revoked; ${MINT}`,
  forbidden: 'this node may not register here (its address, hostname or node type is not the one allowed)',
};

/** One line for a fatal `Error` the plane answered the registration token with. */
export function refusalLine(error: Pick<MessageData<'Error'>, 'code' | 'message'>): string {
  const advice = ADVICE[error.code] ?? 'the control plane refused this node';
  return `${advice} (${error.code}: ${error.message})`;
}
