// The range of every setting of config.ts, as one TypeBox schema (issue 7 item 5): not just its
// type but what makes sense (`heartbeatIntervalMs: 0` would make every node dead at once), so
// that checkConfig refuses a bad setting, naming where it came from; the control plane runs it
// before anything starts. The `satisfies` below makes the compiler insist on a range for every
// key of Config.
import { Type, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { JOB_LIMITS } from './admin/job-request.js';
import { ConfigError, sourceOf, type Config } from './config.js';

/** `setTimeout`'s largest delay: a longer one fires at once. */
const TIMER_MAX_MS = 2 ** 31 - 1;
const DAY_SECONDS = 24 * 3600;
/** Ten years: a token living longer is a mistake, and bigger numbers lose precision as dates. */
const TOKEN_TTL_MAX_SECONDS = 10 * 366 * DAY_SECONDS;

/** Milliseconds a timer waits: at least `min`, and one that `setTimeout` can hold. */
const Ms = (min = 1, max = TIMER_MAX_MS): TSchema => Type.Integer({ minimum: min, maximum: max });
/** A rate or a burst: 0 turns the limit off. */
const Rate = Type.Number({ minimum: 0, maximum: 1e12 });
const Count = (min: number, max: number): TSchema => Type.Integer({ minimum: min, maximum: max });
const Text = Type.String({ maxLength: 4096 });
const Port = '(?:6553[0-5]|655[0-2]\\d|65[0-4]\\d{2}|6[0-4]\\d{3}|[1-5]\\d{4}|\\d{1,4})';
/** One NATS server: `nats://host:port`, `tls://host:port` or `host:port`; no `user:pass@` (nats.js ignores it: use natsToken or a creds file). */
const NATS_URL = '(?:(?:nats|tls)://)?[^\\s,/@]+';
/** `HOST:PORT` (an IPv6 host in brackets), or `off`. */
const Listener = Type.String({ pattern: `^(?:off|(?:\\[[0-9A-Fa-f:.]+\\]|[^\\s:\\[\\]]*):${Port})$` });

export const CONFIG_RANGES = {
  dataDir: Type.String({ minLength: 1, maxLength: 4096 }),
  tcp: Listener,
  unix: Text,
  ws: Listener,
  wsPingIntervalMs: Ms(0),
  grpc: Listener,
  http: Listener,
  apiBodyLimitBytes: Count(1_024, 1024 * 1024 * 1024),
  apiHeadersTimeoutMs: Ms(),
  apiRequestTimeoutMs: Ms(),
  tlsCert: Text,
  tlsKey: Text,
  tlsCa: Text,
  tlsHandshakeTimeoutMs: Ms(),
  requireClientCert: Type.Boolean(),
  grpcKeepaliveTimeMs: Ms(1_000),
  grpcKeepaliveTimeoutMs: Ms(1_000),
  grpcDrainTimeoutMs: Ms(),
  closeTimeoutMs: Ms(),
  encryptKeyFile: Text,
  jwtSecret: Text,
  jwtPreviousSecrets: Type.String({ maxLength: 65_536 }),
  jwtJwks: Text,
  jwtJwksTimeoutMs: Ms(),
  jwtAlgorithms: Type.String({ pattern: '^\\s*(?:HS256|EdDSA|ES256)\\s*(?:,\\s*(?:HS256|EdDSA|ES256)\\s*)*$' }),
  jwtClockToleranceSeconds: Count(0, 3_600),
  tokenCacheTtlMs: Ms(0, 3_600_000),
  tokenCacheEntries: Count(0, 1_000_000),
  revocationPollMs: Ms(0),
  revocationReconcileMs: Ms(1_000),
  tokenKeepExpiredMs: Ms(0),
  tokenPruneIntervalMs: Ms(1_000),
  controlPlaneId: Type.String({ maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f-\\u009f]*$' }),
  // Settings of cluster mode (issue 10); empty `nats` is the embedded plane.
  nats: Type.String({ maxLength: 65_536, pattern: `^(?:\\s*${NATS_URL}\\s*(?:,\\s*${NATS_URL}\\s*)*)?$` }),
  natsCredsFile: Text,
  natsToken: Text,
  natsNkeySeedFile: Text,
  natsTlsCaFile: Text,
  natsTlsCertFile: Text,
  natsTlsKeyFile: Text,
  // JetStream's own limit.
  natsReplicas: Count(1, 5),
  // A lease shorter than a second would age out on a GC pause; longer than an hour leaves a dead replica's nodes unserved.
  leaseTtlMs: Ms(1_000, 3_600_000),
  leaseRenewMs: Ms(100, 1_200_000),
  rebalanceIntervalMs: Ms(0),
  natsRequestTimeoutMs: Ms(10, 600_000),
  natsStartupWaitMs: Ms(0, 3_600_000),
  // A frame must hold a RegisterNode; the length field is 32 bits, and 256 MiB is far beyond any use.
  maxFrameBytes: Count(256, 256 * 1024 * 1024),
  maxSendBufferBytes: Count(1_024, 2 ** 32),
  // Up to 1 TiB: the store streams to disk, so the limit is the disk's, not memory's.
  maxArtifactBytes: Count(0, 2 ** 40),
  // Only uploads that can no longer resume are removed, so a short time loses nothing a node may
  // still send; 0 turns the sweep off.
  artifactAbandonAfterMs: Ms(0),
  registerTimeoutMs: Ms(),
  heartbeatIntervalMs: Ms(),
  maxHeartbeatsPerSecond: Type.Number({ minimum: 0, maximum: 1e9 }),
  maxHeartbeatIntervalMs: Ms(),
  missedHeartbeats: Count(1, 100),
  acceptTimeoutMs: Ms(),
  defaultJobTimeoutMs: Ms(1, JOB_LIMITS.timeoutSecs * 1000),
  jobTimeoutGraceMs: Ms(0),
  maxAttempts: Count(1, JOB_LIMITS.maxAttempts),
  sessionTtlSeconds: Count(1, 365 * DAY_SECONDS),
  tokenDefaultTtlSeconds: Count(1, TOKEN_TTL_MAX_SECONDS),
  tokenMaxTtlSeconds: Count(1, TOKEN_TTL_MAX_SECONDS),
  shutdownGraceMs: Ms(0),
  nodeAllowCidrs: Type.String({ maxLength: 65_536 }),
  apiAllowCidrs: Type.String({ maxLength: 65_536 }),
  nodeMessageRate: Rate,
  nodeMessageBurst: Rate,
  nodeByteRate: Rate,
  nodeByteBurst: Rate,
  // More than a second of reading a second is no limit at all.
  nodeDecodeMsPerSecond: Type.Number({ minimum: 0, maximum: 1_000 }),
  nodeDecodeBurstMs: Type.Number({ minimum: 0, maximum: 60_000 }),
  rateLimitedAnswerIntervalMs: Ms(),
  connectionRate: Rate,
  connectionBurst: Rate,
  failedAuthPerMinute: Count(0, 1e9),
  banAfterViolations: Count(0, 1e9),
  violationWindowMs: Ms(1_000),
  banSeconds: Count(0, 365 * DAY_SECONDS),
  apiRequestRate: Rate,
  // Settings of the store, the scheduler, the listeners and the node registry.
  logKeepaliveMs: Ms(),
  store: Type.Union([Type.Literal('sqlite')]),
  storeBusyTimeoutMs: Ms(0),
  storeBusyRetryMs: Ms(),
  storeBusySliceMs: Ms(0, 1_000),
  storeCheckpointIntervalMs: Ms(0),
  listenBacklog: Count(1, 65_535),
  schedulingPolicy: Type.Union([Type.Literal('spread'), Type.Literal('binpack')]),
  retryBackoffMs: Ms(0),
  retryBackoffMaxMs: Ms(0),
  breakerFailures: Count(1, 1_000),
  breakerCooloffMs: Ms(),
  breakerMaxCooloffMs: Ms(),
  deadNodeRetentionMs: Ms(0),
  connectionProbation: Count(0, 1e9),
  banExemptCidrs: Type.String({ maxLength: 65_536 }),
  maxTrackedAddresses: Count(1, 10_000_000),
  apiRequestBurst: Rate,
  auditLog: Text,
  logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
  inspect: Type.String({ maxLength: 4096, pattern: '^(?:wss?://\\S+)?$' }),
} satisfies Record<keyof Config, TSchema>;

/** Rules between settings: each names the setting to blame and says what is wrong, or nothing. */
export const CONFIG_RULES: ((c: Config) => [keyof Config, string] | undefined)[] = [
  (c) =>
    c.apiRequestTimeoutMs < c.apiHeadersTimeoutMs
      ? ['apiRequestTimeoutMs', `must be at least apiHeadersTimeoutMs (${c.apiHeadersTimeoutMs})`]
      : undefined,
  (c) =>
    c.heartbeatIntervalMs * (c.missedHeartbeats + 1) > TIMER_MAX_MS
      ? ['heartbeatIntervalMs', `times missedHeartbeats + 1 must stay within ${TIMER_MAX_MS} ms (a timer's longest wait)`]
      : undefined,
  (c) =>
    c.maxHeartbeatIntervalMs * (c.missedHeartbeats + 1) > TIMER_MAX_MS
      ? ['maxHeartbeatIntervalMs', `times missedHeartbeats + 1 must stay within ${TIMER_MAX_MS} ms (a timer's longest wait)`]
      : undefined,
  (c) =>
    c.tokenDefaultTtlSeconds > c.tokenMaxTtlSeconds
      ? ['tokenDefaultTtlSeconds', `must be at most tokenMaxTtlSeconds (${c.tokenMaxTtlSeconds})`]
      : undefined,
  (c) =>
    c.breakerMaxCooloffMs < c.breakerCooloffMs
      ? ['breakerMaxCooloffMs', `must be at least breakerCooloffMs (${c.breakerCooloffMs})`]
      : undefined,
  (c) => ((c.tlsCert === '') !== (c.tlsKey === '') ? ['tlsKey', 'tlsCert and tlsKey go together: set both or neither'] : undefined),
  (c) => (c.requireClientCert && c.tlsCa === '' ? ['tlsCa', 'requireClientCert needs tlsCa to verify client certificates'] : undefined),
  // Three renewals a TTL: one lost to a slow NATS round trip still leaves two before the lease ages out.
  (c) =>
    c.leaseRenewMs * 3 > c.leaseTtlMs
      ? ['leaseRenewMs', `must be at most a third of leaseTtlMs (${c.leaseTtlMs}), so that one missed renewal does not lose the lease`]
      : undefined,
  (c) =>
    (c.natsTlsCertFile === '') !== (c.natsTlsKeyFile === '')
      ? ['natsTlsKeyFile', 'natsTlsCertFile and natsTlsKeyFile go together: set both or neither']
      : undefined,
  (c) =>
    [c.natsCredsFile, c.natsToken, c.natsNkeySeedFile].filter((v) => v !== '').length > 1
      ? ['natsToken', 'natsCredsFile, natsToken and natsNkeySeedFile are three ways to authenticate to NATS: set one at most']
      : undefined,
];

const rangeCheck = TypeCompiler.Compile(Type.Object(CONFIG_RANGES));

/**
 * Throws one ConfigError naming every setting out of its range, or breaking a rule between
 * settings, each with where its value came from (loadConfig remembers it).
 */
export function checkConfig(config: Config): void {
  const problems: { setting: string; source: string; problem: string }[] = [];
  const blame = (setting: keyof Config, problem: string): void => {
    problems.push({ setting, source: sourceOf(config, setting), problem });
  };
  if (!rangeCheck.Check(config)) {
    for (const error of rangeCheck.Errors(config)) {
      const setting = error.path.slice(1) as keyof Config;
      if (problems.some((p) => p.setting === setting)) continue;
      blame(setting, `${rangeProblem(error.message, error.schema)}, got ${JSON.stringify(config[setting])}`);
    }
  }
  if (problems.length === 0) {
    for (const rule of CONFIG_RULES) {
      const broken = rule(config);
      if (broken !== undefined) blame(broken[0], broken[1]);
    }
  }
  if (problems.length === 0) return;
  // One line (the CLI prints the first line of an error): every problem, each with its source.
  const text = problems.map((p) => `${p.source}: ${p.setting} ${p.problem}`).join('; ');
  throw new ConfigError(`bad configuration: ${text}`, problems);
}

/** TypeBox's "Expected integer to be greater or equal to 1" as "must be greater or equal to 1"; a choice lists its values. */
function rangeProblem(message: string, schema: TSchema): string {
  const choices = (schema as { anyOf?: { const?: unknown }[] }).anyOf;
  if (choices !== undefined) return `must be one of ${choices.map((c) => String(c.const)).join(', ')}`;
  return message
    .replace(/^Expected (?:integer|number|string|boolean) to be /, 'must be ')
    .replace(/^Expected (?:string )?to /, 'must ')
    .replace(/^Expected /, 'must be ');
}
