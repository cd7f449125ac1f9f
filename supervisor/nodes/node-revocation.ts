// A revoked token ends every node connection standing on it (PROTOCOL.md section 5), including
// the race where the token is revoked while its node is still being authenticated: that
// revocation found no session to close yet, so the registration checks again before its ack.
import { MusterError } from '../../protocol/errors.js';
import type { SessionTokens } from '../tokens/session-tokens.js';
import type { NodeSession } from './node-session.js';

export class NodeRevocation {
  constructor(
    private readonly sessionTokens: SessionTokens<NodeSession>,
    private readonly isRevoked: (jti: string) => boolean,
  ) {}

  /** Every node standing on `jti` is told `token_revoked` and closed at once. */
  disconnect(jti: string): void {
    for (const session of this.sessionTokens.sessionsWith(jti)) {
      session.logger.warn({ node_id: session.nodeId, jti }, 'token revoked; disconnecting node');
      this.sessionTokens.forget(session);
      void session.closeWith(new MusterError('token_revoked', 'token has been revoked'));
    }
  }

  /**
   * True (and the connection is closed, answering `replyTo`) when one of `tokenIds` was revoked
   * while the node was being authenticated.
   */
  revokedMeanwhile(session: NodeSession, tokenIds: readonly string[], replyTo: string | undefined): boolean {
    if (!tokenIds.some((jti) => this.isRevoked(jti))) return false;
    void session.closeWith(new MusterError('token_revoked', 'token has been revoked', { replyTo }));
    return true;
  }
}
