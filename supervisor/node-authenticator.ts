// Decides who a `RegisterNode` is (PROTOCOL.md sections 4 and 5): a registration token
// makes a new node; a session token with `resume` brings back the node it was minted for.
import { randomUUID } from 'node:crypto';
import type { Registration } from '../actors/node-machine.js';
import type { EnvelopeOf } from '../protocol/messages.js';
import type { TokenAuthority } from './tokens.js';

export interface Authenticated {
  registration: Registration;
  session: { token: string; expiresAt: Date };
  /** Jobs the node says it still has (running, or finished with a result not yet acked). */
  keepJobs: ReadonlySet<string>;
}

export async function authenticateNode(
  tokens: TokenAuthority,
  sessionTtlSeconds: number,
  message: EnvelopeOf<'RegisterNode'>,
): Promise<Authenticated> {
  const { node_info: info, capabilities, auth_token: token, resume } = message.data;
  const verified = await tokens.verifyNodeToken(token, {
    hostname: info.hostname,
    nodeType: info.node_type,
    resumeNodeId: resume?.node_id,
  });
  // Only a session token proves which node this is: a registration token with `resume`
  // registers a new node, or anyone holding one could take over any node id.
  const resumed = verified.kind === 'session' && resume !== undefined;
  const nodeId = resumed ? resume.node_id : randomUUID();
  const keepJobs = new Set(resumed ? [...resume.running_jobs, ...resume.unacked_results] : []);
  return {
    registration: { nodeId, resumed, info, capabilities, jobs: {} },
    session: await tokens.mintSessionToken(nodeId, sessionTtlSeconds),
    keepJobs,
  };
}
