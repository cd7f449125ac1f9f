// What every route group of the admin HTTP API is given by api-server.ts. Its own module, so that
// the routes and the server that registers them do not import each other.
import type { Logger } from '../../observability/logger.js';
import type { AuditSink } from '../security/audit-log.js';
import type { PlaneApi } from './plane-api.js';
import type { TokenAuthority } from '../tokens/tokens.js';

/** What every route group gets. */
export interface AdminRouteDeps {
  api: PlaneApi;
  tokens: TokenAuthority;
  logger: Logger;
  /** Aborted when the server closes, so long-lived responses (log follows) end. */
  closing: AbortSignal;
  /** Quiet time after which a log follow sends a keepalive comment. */
  logKeepaliveMs: number;
  /** Where security events go (`token_minted`, `token_revoked`, ...); undefined when not audited. */
  audit?: AuditSink;
}
