// Decides who a `RegisterNode` is (PROTOCOL.md sections 4 and 5): a registration token
// makes a new node; a session token with `resume` brings back the node it was minted for.
// On a mutual-TLS listener the client certificate must also name the registration token's `sub`.
import { randomUUID } from 'node:crypto';
import type { Registration } from '../../actors/node-machine.js';
import { MusterError } from '../../protocol/errors.js';
import type { EnvelopeOf } from '../../protocol/messages.js';
import type { TokenInfo } from '../store/token-store.js';
import type { TokenAuthority, VerifiedNodeToken } from '../tokens/tokens.js';

export interface Authenticated {
  registration: Registration;
  session: { token: string; expiresAt: Date; jti: string; info: TokenInfo };
  /** Jobs the node says it still has (running, or finished with a result not yet acked). */
  keepJobs: ReadonlySet<string>;
  /** Of those, the ones it says are still running (`resume.running_jobs`). */
  runningJobs: readonly string[];
  /**
   * Ids of the tokens this connection stands on: the one it came with, the registration token its
   * session descends from, and the new session token. Revoking any of them ends the connection.
   */
  tokenIds: string[];
  /** The registration token the session descends from; carried into every session token. */
  registrationJti?: string;
  /** The id of the token the node came with, as verified (for the audit line). */
  presentedJti?: string;
}

export async function authenticateNode(
  tokens: TokenAuthority,
  sessionTtlSeconds: number,
  message: EnvelopeOf<'RegisterNode'>,
  /** The connection's `peerNames`: names of its verified client certificate, empty without one. */
  peerNames: readonly string[],
): Promise<Authenticated> {
  const { node_info: info, capabilities, auth_token: token, resume } = message.data;
  const verified = await tokens.verifyNodeToken(token, {
    hostname: info.hostname,
    nodeType: info.node_type,
    resumeNodeId: resume?.node_id,
  });
  checkCertificateNames(verified, peerNames);
  // Only a session token proves which node this is: a registration token with `resume`
  // registers a new node, or anyone holding one could take over any node id.
  const resumed = verified.kind === 'session' && resume !== undefined;
  const nodeId = resumed ? resume.node_id : randomUUID();
  const keepJobs = new Set(resumed ? [...resume.running_jobs, ...resume.unacked_results] : []);
  // The lineage goes with the session, so revoking the registration token also ends every session from it.
  const registrationJti = verified.kind === 'registration' ? verified.jti : verified.registrationJti;
  const session = await tokens.mintSessionToken(nodeId, sessionTtlSeconds, registrationJti);
  const tokenIds = [...new Set([verified.jti, registrationJti, session.jti])].filter((jti) => jti !== undefined);
  const authenticated: Authenticated = {
    registration: { nodeId, resumed, info, capabilities },
    session,
    keepJobs,
    runningJobs: resumed ? resume.running_jobs : [],
    tokenIds,
  };
  if (registrationJti !== undefined) authenticated.registrationJti = registrationJti;
  if (verified.jti !== undefined) authenticated.presentedJti = verified.jti;
  return authenticated;
}

/**
 * A registration token pinned to a host (`sub`) is only good over a connection whose client
 * certificate names that host, so a stolen token is useless without the host's key too.
 */
function checkCertificateNames(verified: VerifiedNodeToken, peerNames: readonly string[]): void {
  if (peerNames.length === 0 || verified.kind !== 'registration' || verified.sub === undefined) return;
  if (!peerNames.includes(verified.sub)) {
    throw new MusterError('forbidden', "client certificate does not name the registration token's subject");
  }
}
