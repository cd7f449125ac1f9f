// Which plane owns each node, asked before a node is acknowledged: the embedded plane owns every
// node that reaches it, under one constant token (`soleOwner`); a cluster replica claims the node
// in NATS first (cluster/replica-claims.ts), which may take it from another replica. The
// registrar claims, the job coordinator writes each attempt of the node under the claim's token.
import type { OwnerToken } from '../store/job-store.js';
import { EMBEDDED_OWNER } from '../store/open-stores.js';

export interface NodeClaim {
  /** The fencing token of every job write for the node while this plane owns it. */
  token: OwnerToken;
  /** The node was another owner's (or this replica's under an older lease): its attempts must be taken over. */
  takeover: boolean;
}

export interface NodeClaims {
  /** Makes this plane the node's owner; rejects with a MusterError (`shutting_down`) when it cannot be now. */
  claim(nodeId: string): Promise<NodeClaim>;
  /** The token under which this plane owns the node now, or undefined: it writes nothing for it. */
  tokenOf(nodeId: string): OwnerToken | undefined;
}

/** The embedded plane: the only writer, so every node is its own under one token. */
export const soleOwner: NodeClaims = {
  claim: () => Promise.resolve({ token: EMBEDDED_OWNER, takeover: false }),
  tokenOf: () => EMBEDDED_OWNER,
};
