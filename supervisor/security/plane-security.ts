// The control plane's access control, rate limits and audit log, made from the configuration
// in one place: the audit log, the per-address guard shared by the node listeners and the admin
// API, the node listeners' gate, the admin API's access settings and the per-node rates.
// Bad settings (a malformed CIDR) throw here, before anything listens.
import type { Logger } from '../../observability/logger.js';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import { AddressGuard } from './address-guard.js';
import type { AdminAccess } from '../admin/api-access.js';
import { AuditLog } from './audit-log.js';
import { CidrList } from './cidr-list.js';
import type { Config } from '../config.js';
import { KeyedRateLimit } from './keyed-rate-limit.js';
import { NodeGate } from './node-gate.js';
import type { NodeRates } from './node-rate-limit.js';

export interface PlaneSecurity {
  readonly audit: AuditLog;
  readonly guard: AddressGuard;
  /** Asked before each node session starts, told how it went. */
  readonly gate: NodeGate;
  /** For `startAdminApi({ access })`. */
  readonly adminAccess: AdminAccess;
  /** Each node connection's message and byte rates. */
  readonly nodeRates: NodeRates;
  /** Stops the guard's sweep timer and closes the audit file. */
  close(): void;
}

export function createPlaneSecurity(config: Config, logger: Logger, metrics?: Pick<PlaneMetrics, 'authFailed' | 'rateLimited'>): PlaneSecurity {
  const nodeAllow = CidrList.parse(config.nodeAllowCidrs, 'nodeAllowCidrs');
  const apiAllow = CidrList.parse(config.apiAllowCidrs, 'apiAllowCidrs');
  const audit = new AuditLog({ path: config.auditLog, logger, windowMs: config.violationWindowMs });
  const guard = new AddressGuard(
    {
      connectionsPerSecond: config.connectionRate,
      connectionBurst: config.connectionBurst,
      connectionProbation: config.connectionProbation,
      failedAuthPerMinute: config.failedAuthPerMinute,
      banAfterViolations: config.banAfterViolations,
      banSeconds: config.banSeconds,
      violationWindowMs: config.violationWindowMs,
      maxAddresses: config.maxTrackedAddresses,
      exempt: CidrList.parse(config.banExemptCidrs, 'banExemptCidrs'),
    },
    audit,
  );
  const adminAccess: AdminAccess = { allow: apiAllow, guard, audit, ...(metrics === undefined ? {} : { metrics }) };
  if (config.apiRequestRate > 0) adminAccess.perToken = new KeyedRateLimit(config.apiRequestRate, config.apiRequestBurst);
  return {
    audit,
    guard,
    gate: new NodeGate({ allow: nodeAllow, guard, audit, ...(metrics === undefined ? {} : { metrics }) }),
    adminAccess,
    nodeRates: {
      messagesPerSecond: config.nodeMessageRate,
      messageBurst: config.nodeMessageBurst,
      bytesPerSecond: config.nodeByteRate,
      // A frame as large as max_frame_bytes must be able to pass at all.
      byteBurst: Math.max(config.nodeByteBurst, config.maxFrameBytes),
      decodeMsPerSecond: config.nodeDecodeMsPerSecond,
      decodeBurstMs: config.nodeDecodeBurstMs,
      maxPauseMs: config.heartbeatIntervalMs,
      banAfterViolations: config.banAfterViolations,
      violationWindowMs: config.violationWindowMs,
      answerIntervalMs: config.rateLimitedAnswerIntervalMs,
    },
    close: () => {
      guard.close();
      audit.close();
    },
  };
}
