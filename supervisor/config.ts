// Every setting of the control plane and its default, in one place.
// Precedence: defaults < config file (JSON) < MUSTER_* environment variables < command-line flags.
// loadConfig remembers where each value came from (file, variable or flag), so that
// config-ranges.ts's checkConfig, which the control plane runs before anything starts, names the
// source of a bad setting. (The check is apart so that the CLI's client commands, which read a
// few settings, do not load TypeBox: that costs them most of their start-up time.)
import { join } from 'node:path';
import { readJsonFile } from './json-file.js';

export interface Config {
  /** Where the SQLite job store, the generated secret and the Unix socket live. */
  dataDir: string;
  /** HOST:PORT of the TCP node listener; `off` disables it (as for every listener). */
  tcp: string;
  /** Path of the Unix socket node listener; empty means `<dataDir>/muster.sock`. */
  unix: string;
  /** HOST:PORT of the WebSocket node listener (path `/v1/connect`). */
  ws: string;
  /** WebSocket keepalive: each node connection is pinged this often and dropped when it missed the last pong. */
  wsPingIntervalMs: number;
  /** HOST:PORT of the gRPC node listener (`muster.v1.NodeLink/Connect`). */
  grpc: string;
  /** HOST:PORT of the admin HTTP API. */
  http: string;
  /** The largest admin API request body; over it: 413. A job must fit `maxFrameBytes` anyway. */
  apiBodyLimitBytes: number;
  /** How long an admin API client may take to send its request headers; then 408 and closed (a client trickling headers holds no connection). */
  apiHeadersTimeoutMs: number;
  /** How long an admin API client may take to send its whole request, body included (at least `apiHeadersTimeoutMs`). */
  apiRequestTimeoutMs: number;
  /**
   * PEM certificate and key files: when both are set, the TCP, WebSocket and gRPC
   * listeners serve TLS (`tls://`, `wss://`, `grpcs://`); the Unix socket stays plain.
   */
  tlsCert: string;
  tlsKey: string;
  /** CA bundle for client certificates (mutual TLS). */
  tlsCa: string;
  /** A TLS client that connects and never finishes the handshake is dropped after this long (like one that never registers). */
  tlsHandshakeTimeoutMs: number;
  /** Mutual TLS: refuse clients without a certificate signed by `tlsCa`. */
  requireClientCert: boolean;
  /**
   * gRPC: send an HTTP/2 PING after this long without a frame from the peer, so that a
   * half-open connection is noticed without waiting for TCP retransmissions (~15 minutes).
   */
  grpcKeepaliveTimeMs: number;
  /** gRPC: close the connection when a PING is not answered within this long. */
  grpcKeepaliveTimeoutMs: number;
  /** gRPC: on stop, calls still open after this long are cut (each connection's own close is bounded by `closeTimeoutMs`). */
  grpcDrainTimeoutMs: number;
  /** How long a node connection's graceful close may take (unsent data flushed, peer's close awaited) before it is cut. */
  closeTimeoutMs: number;
  /**
   * File holding a 32-byte AES-256-GCM key, base64 (PROTOCOL.md section 6): when set, every
   * node listener encrypts every frame in both directions; empty: no payload encryption.
   */
  encryptKeyFile: string;
  /** HS256 secret (at least 32 bytes); default read or generated at `<dataDir>/secret`. */
  jwtSecret: string;
  /** Earlier HS256 secrets, comma-separated: tokens they signed still verify (rotation), nothing new is signed with them. */
  jwtPreviousSecrets: string;
  /** JWKS for EdDSA / ES256 tokens: a file path, or an http(s) URL on the operator's network; empty: none. */
  jwtJwks: string;
  /** How long a JWKS fetch from a URL may take. */
  jwtJwksTimeoutMs: number;
  /** Token algorithms accepted, comma-separated, from HS256, EdDSA, ES256; HS256 is required (session tokens). */
  jwtAlgorithms: string;
  /** Clock-skew leeway for `exp` and `nbf`, in seconds. */
  jwtClockToleranceSeconds: number;
  /** How long a registration or API token (HS256), once verified, is trusted by its text without checking its signature again; expiry and revocation are checked on every use. 0: always verify. */
  tokenCacheTtlMs: number;
  /** Most tokens trusted so at once (oldest dropped first). */
  tokenCacheEntries: number;
  /** How often the plane reads revocations written by other processes (the CLI offline); 0: never. */
  revocationPollMs: number;
  /** A cluster replica hears of revocations by a KV watch, and its polls read only after it heard one; it reads anyway this often, as the watch is a hint. */
  revocationReconcileMs: number;
  /** Recorded tokens (and their revocations) expired longer ago than this are forgotten; an expired token is refused anyway. */
  tokenKeepExpiredMs: number;
  /** How often the plane forgets such tokens. */
  tokenPruneIntervalMs: number;
  /** A log follow (`GET /v1/jobs/{id}/logs?follow=1`) sends a comment line after this long without output, so idle timeouts of clients and proxies do not end it. */
  logKeepaliveMs: number;
  /** Where jobs and tokens are kept: `sqlite`, one file (`muster.db`) in `dataDir`, the only store so far. */
  store: string;
  /** How long a store write may wait for another process's write lock (the CLI offline) before it fails. */
  storeBusyTimeoutMs: number;
  /** How often a store write that found the lock taken tries again (asynchronously: the event loop runs meanwhile). */
  storeBusyRetryMs: number;
  /** The longest the event loop waits inside SQLite for a lock in one go (a read, one try to begin a write). */
  storeBusySliceMs: number;
  /** How often a worker thread checkpoints the store's WAL (SQLite's own checkpoints, inside commits, are off); 0: SQLite's own. */
  storeCheckpointIntervalMs: number;
  /** Identifier of this control-plane replica, sent in `RegisterAck`; in a cluster, its name on NATS. */
  controlPlaneId: string;
  /**
   * NATS servers, comma-separated URLs (`nats://h1:4222,nats://h2:4222`): the plane then runs as
   * one replica of a cluster; empty: the embedded plane (in-process bus, SQLite store).
   */
  nats: string;
  /** NATS credentials file (JWT and NKey seed, `.creds`), re-read on every reconnect; empty: none. */
  natsCredsFile: string;
  /** NATS token (a server's `authorization { token }`); empty: none. */
  natsToken: string;
  /** File holding an NKey seed (`SU...`) for a server's `nkey` users, re-read on every reconnect; empty: none. */
  natsNkeySeedFile: string;
  /** PEM CA bundle the NATS servers' certificates must chain to; setting any NATS TLS file requires TLS. */
  natsTlsCaFile: string;
  /** PEM client certificate for NATS servers that verify clients (with `natsTlsKeyFile`). */
  natsTlsCertFile: string;
  /** PEM private key of `natsTlsCertFile`. */
  natsTlsKeyFile: string;
  /** JetStream replicas of the cluster's streams and buckets (R1 for those that rely on compare-and-set before nats-server 2.9.21). */
  natsReplicas: number;
  /** A replica's lease ages out of its KV bucket this long after its last renewal: then its nodes may be taken over. */
  leaseTtlMs: number;
  /** How often a replica renews its lease: well below `leaseTtlMs` (at most a third), so one lost renewal loses nothing. */
  leaseRenewMs: number;
  /**
   * How often a replica compares the nodes it serves with an even share of the cluster's and, when
   * it holds more than 10% over, sheds a few idle ones (`Shutdown{reason: "rebalance"}`); 0: never.
   */
  rebalanceIntervalMs: number;
  /** How long a request over NATS (a command to the replica that owns a node) waits for its answer. */
  natsRequestTimeoutMs: number;
  /** How long a replica at start waits for NATS and JetStream to answer (not up yet, still starting) before it gives up; 0: not at all. */
  natsStartupWaitMs: number;
  maxFrameBytes: number;
  maxSendBufferBytes: number;
  /** `max_artifact_bytes`: the largest artifact a node may upload (PROTOCOL.md section 8); larger is `artifact_rejected`. */
  maxArtifactBytes: number;
  /**
   * An artifact upload whose last stored chunk (its first Start when it has none) is this old,
   * and whose attempt can no longer resume (its job ended or went on to a later attempt), is
   * removed with what it stored; one of the job's current attempt is kept however long
   * (PROTOCOL.md section 8). 0: never.
   */
  artifactAbandonAfterMs: number;
  /** Connections the kernel queues per node listener before the plane accepts them (capped by net.core.somaxconn). */
  listenBacklog: number;
  registerTimeoutMs: number;
  /** The interval given to nodes in `RegisterAck` while the fleet is small: the shortest the plane asks for. */
  heartbeatIntervalMs: number;
  /**
   * The fleet's heartbeats a second the plane keeps under, as Nomad's `max_heartbeats_per_second`:
   * as the fleet grows, nodes are given longer intervals with `Configure` (shorter as it shrinks),
   * between `heartbeatIntervalMs` and `maxHeartbeatIntervalMs`. 0: no limit, every node keeps `heartbeatIntervalMs`.
   */
  maxHeartbeatsPerSecond: number;
  /** The longest interval the plane gives a node, however large the fleet (below `heartbeatIntervalMs`: that one, no adaptation). */
  maxHeartbeatIntervalMs: number;
  missedHeartbeats: number;
  acceptTimeoutMs: number;
  /** Job timeout when a submission gives none. */
  defaultJobTimeoutMs: number;
  /** Extra time the plane gives a job past its own timeout before it ends the job itself (the agent enforces the timeout first). */
  jobTimeoutGraceMs: number;
  maxAttempts: number;
  /** How the scheduler picks among matching nodes: `spread` (least loaded first) or `binpack` (most loaded that fits). */
  schedulingPolicy: string;
  /** A withdrawn attempt (rejected, node dead, accept timeout) waits this long before the next is placed, doubling per attempt; 0: at once. */
  retryBackoffMs: number;
  /** The longest such wait. */
  retryBackoffMaxMs: number;
  /** Attempts in a row that fail for a node's own reasons (rejected, not accepted in time, lost on resume) before the node is benched. */
  breakerFailures: number;
  /** A benched node takes no job for this long; each next bench in a row lasts twice as long. */
  breakerCooloffMs: number;
  /** The longest bench. */
  breakerMaxCooloffMs: number;
  sessionTtlSeconds: number;
  /** Lifetime of a token minted over the admin API (`POST /v1/tokens`) without `ttl_seconds`. */
  tokenDefaultTtlSeconds: number;
  /** The longest `ttl_seconds` the admin API mints; over it: 400 `invalid_message`. */
  tokenMaxTtlSeconds: number;
  /** How long `GET /v1/nodes` still lists a dead node (`state: dead`) before the plane forgets it. */
  deadNodeRetentionMs: number;
  /** What `Shutdown` gives nodes, and how long the plane waits for in-flight writes on SIGTERM. */
  shutdownGraceMs: number;
  /**
   * Networks (CIDR, comma-separated) node connections may come from; empty allows every address.
   * Others get `Error{code:"forbidden"}` and are closed. The Unix socket has no address: always allowed.
   */
  nodeAllowCidrs: string;
  /** Networks (CIDR, comma-separated) the admin HTTP API answers, probes included; empty allows every address. */
  apiAllowCidrs: string;
  /** Frames a second one node connection may send (a token bucket); over it frames are dropped with `rate_limited`. 0: no limit. */
  nodeMessageRate: number;
  /** Frames a node may send at once before `nodeMessageRate` applies. */
  nodeMessageBurst: number;
  /** Frame bytes a second one node connection may send; 0: no limit. */
  nodeByteRate: number;
  /** Bytes a node may send at once before `nodeByteRate` applies (at least `maxFrameBytes` is used). */
  nodeByteBurst: number;
  /**
   * Milliseconds a second the plane may spend reading (walking, decoding, validating) one node
   * connection's frames; over it, its frames are dropped with `rate_limited` until the time is
   * paid back, so no single node can take the event loop from the others. 0: no limit.
   */
  nodeDecodeMsPerSecond: number;
  /** Reading time one node may use at once before `nodeDecodeMsPerSecond` applies. */
  nodeDecodeBurstMs: number;
  /** A node over its rates hears `rate_limited` at most this often; the frames between are dropped quietly (answering each would amplify a flood). */
  rateLimitedAnswerIntervalMs: number;
  /** New node connections a second from one address (IPv6: one /64); over it they are refused with `rate_limited`. 0: no limit. */
  connectionRate: number;
  /** Connections one address may open at once before `connectionRate` applies. */
  connectionBurst: number;
  /**
   * Connections over `connectionRate` one address may hold open at once, each let in only if its
   * `RegisterNode` resumes a session with a valid session token (a fleet behind one NAT address
   * reconnecting at once); the others are refused with `rate_limited` then. 0: refuse them at once.
   */
  connectionProbation: number;
  /** Failed authentications a minute from one address (node registrations and admin API tokens); past it: refused, and one `suspicious_activity` audit event. 0: no limit. */
  failedAuthPerMinute: number;
  /** Times within `violationWindowMs` an address (or one node) may go over a limit before its address is banned; 0: never ban. */
  banAfterViolations: number;
  /** The window violations are counted in (`banAfterViolations`), and in which an address gets one `suspicious_activity` audit line. */
  violationWindowMs: number;
  /** How long a ban lasts; a banned address's connections are refused with `rate_limited`, its API requests with 403. */
  banSeconds: number;
  /** Networks (CIDR, comma-separated) never locked out: failed authentications from them are audited, never counted or banned. Default loopback; empty: none. */
  banExemptCidrs: string;
  /** Most addresses whose limits and bans are tracked at once; past it the least recently seen is forgotten. */
  maxTrackedAddresses: number;
  /** Admin API requests a second per token (by `jti`); over it: 429 `rate_limited`. 0: no limit. */
  apiRequestRate: number;
  /** Requests one token may make at once before `apiRequestRate` applies. */
  apiRequestBurst: number;
  /** File the audit log's JSON lines are appended to; empty: audit events go to the log only. */
  auditLog: string;
  logLevel: string;
  /** `ws://` or `wss://` URL of a Stately inspector (`@statelyai/inspect`): every node actor is fed to it; empty: none (and the actors pay nothing). */
  inspect: string;
}

/** A listener setting with this value is not started. */
export const LISTENER_OFF = 'off';

export const DEFAULTS: Config = {
  dataDir: './.muster',
  tcp: '127.0.0.1:7420',
  unix: '',
  ws: '127.0.0.1:7421',
  wsPingIntervalMs: 15_000,
  grpc: '127.0.0.1:7422',
  http: '127.0.0.1:7480',
  apiBodyLimitBytes: 1_048_576,
  apiHeadersTimeoutMs: 10_000,
  apiRequestTimeoutMs: 30_000,
  tlsCert: '',
  tlsKey: '',
  tlsCa: '',
  tlsHandshakeTimeoutMs: 10_000,
  requireClientCert: false,
  grpcKeepaliveTimeMs: 10_000,
  grpcKeepaliveTimeoutMs: 10_000,
  grpcDrainTimeoutMs: 30_000,
  closeTimeoutMs: 2_000,
  encryptKeyFile: '',
  jwtSecret: '',
  jwtPreviousSecrets: '',
  jwtJwks: '',
  jwtJwksTimeoutMs: 5_000,
  jwtAlgorithms: 'HS256,EdDSA,ES256',
  jwtClockToleranceSeconds: 30,
  tokenCacheTtlMs: 60_000,
  tokenCacheEntries: 1_000,
  revocationPollMs: 1_000,
  revocationReconcileMs: 60_000,
  tokenKeepExpiredMs: 24 * 3_600_000,
  tokenPruneIntervalMs: 3_600_000,
  logKeepaliveMs: 15_000,
  store: 'sqlite',
  storeBusyTimeoutMs: 5_000,
  storeBusyRetryMs: 10,
  storeBusySliceMs: 2,
  storeCheckpointIntervalMs: 1_000,
  controlPlaneId: '',
  nats: '',
  natsCredsFile: '',
  natsToken: '',
  natsNkeySeedFile: '',
  natsTlsCaFile: '',
  natsTlsCertFile: '',
  natsTlsKeyFile: '',
  natsReplicas: 1,
  leaseTtlMs: 5_000,
  leaseRenewMs: 1_000,
  rebalanceIntervalMs: 5_000,
  natsRequestTimeoutMs: 2_000,
  natsStartupWaitMs: 60_000,
  maxFrameBytes: 1_048_576,
  maxSendBufferBytes: 8 * 1024 * 1024,
  maxArtifactBytes: 2 * 1024 * 1024 * 1024,
  artifactAbandonAfterMs: 3_600_000,
  listenBacklog: 4096,
  registerTimeoutMs: 10_000,
  heartbeatIntervalMs: 5_000,
  maxHeartbeatsPerSecond: 2_000,
  maxHeartbeatIntervalMs: 60_000,
  missedHeartbeats: 3,
  acceptTimeoutMs: 5_000,
  defaultJobTimeoutMs: 3_600_000,
  jobTimeoutGraceMs: 10_000,
  maxAttempts: 3,
  schedulingPolicy: 'spread',
  retryBackoffMs: 1_000,
  retryBackoffMaxMs: 60_000,
  breakerFailures: 3,
  breakerCooloffMs: 30_000,
  breakerMaxCooloffMs: 600_000,
  sessionTtlSeconds: 24 * 3600,
  tokenDefaultTtlSeconds: 3600,
  // Ten years: a longer-lived token is a mistake.
  tokenMaxTtlSeconds: 10 * 366 * 86_400,
  deadNodeRetentionMs: 5 * 60_000,
  shutdownGraceMs: 10_000,
  nodeAllowCidrs: '',
  apiAllowCidrs: '',
  nodeMessageRate: 1_000,
  nodeMessageBurst: 5_000,
  nodeByteRate: 10 * 1024 * 1024,
  nodeByteBurst: 50 * 1024 * 1024,
  // A tenth of the event loop: a healthy node takes well under a millisecond a second.
  nodeDecodeMsPerSecond: 100,
  nodeDecodeBurstMs: 500,
  rateLimitedAnswerIntervalMs: 1_000,
  connectionRate: 50,
  connectionBurst: 200,
  connectionProbation: 10_000,
  failedAuthPerMinute: 10,
  banAfterViolations: 10,
  violationWindowMs: 60_000,
  banSeconds: 300,
  banExemptCidrs: '127.0.0.0/8,::1/128',
  maxTrackedAddresses: 65_536,
  // A CI system polls a few hundred jobs a second and submits a pipeline as one batch request.
  apiRequestRate: 500,
  apiRequestBurst: 1000,
  auditLog: '',
  logLevel: 'info',
  inspect: '',
};

type Key = keyof Config;


/** Variables not named after their key: `MUSTER_NATS` would not say that it holds URLs. */
const ENV_NAMES: Partial<Record<Key, string>> = { nats: 'MUSTER_NATS_URL' };

/** Flags not named after their key: the NATS files are named as nats-server's own options are. */
const FLAG_NAMES: Partial<Record<Key, string>> = {
  natsCredsFile: 'nats-creds',
  natsNkeySeedFile: 'nats-nkey-seed',
  natsTlsCaFile: 'nats-tls-ca',
  natsTlsCertFile: 'nats-tls-cert',
  natsTlsKeyFile: 'nats-tls-key',
};

/** `heartbeatIntervalMs` → `MUSTER_HEARTBEAT_INTERVAL_MS`. */
export function envName(key: Key): string {
  return ENV_NAMES[key] ?? `MUSTER_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export interface ConfigSources {
  /** Path of a JSON file with any of the Config keys. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values from flags; undefined entries are ignored. */
  overrides?: Partial<Record<Key, string | number | boolean | undefined>>;
}

/** A setting out of its range, or unreadable: names the setting and where its value came from. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    message: string,
    /** The settings at fault and their sources, e.g. `heartbeatIntervalMs` from `MUSTER_HEARTBEAT_INTERVAL_MS`. */
    readonly problems: readonly { setting: string; source: string; problem: string }[] = [],
  ) {
    super(message);
  }
}

type Origins = Partial<Record<Key, string>>;

const originsOf = new WeakMap<Config, Origins>();

/** Where the value of `key` in `config` came from: `config file …`, a `MUSTER_*` variable, a `--flag`, or `the default`. */
export function sourceOf(config: Config, key: Key): string {
  return originsOf.get(config)?.[key] ?? 'the default';
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const config: Config = { ...DEFAULTS };
  const origins: Origins = {};
  const file = sources.file ?? env.MUSTER_CONFIG;
  if (file !== undefined && file !== '') {
    const parsed = readConfigFile(file);
    for (const [k, v] of Object.entries(parsed)) set(config, origins, k, v, `config file ${file}`);
  }
  for (const key of Object.keys(DEFAULTS) as Key[]) {
    const value = env[envName(key)];
    if (value !== undefined) set(config, origins, key, value, envName(key));
  }
  for (const [k, v] of Object.entries(sources.overrides ?? {})) if (v !== undefined) set(config, origins, k, v, `--${flagName(k)}`);
  if (config.unix === '') config.unix = join(config.dataDir, 'muster.sock');
  originsOf.set(config, origins);
  return config;
}

function readConfigFile(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = readJsonFile(file);
  } catch (err) {
    // readJsonFile names the file, and the line and column where the JSON breaks.
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError(`config file ${file} is not a JSON object`);
  return parsed as Record<string, unknown>;
}

/** `heartbeatIntervalMs` → `heartbeat-interval-ms`, as commander names the flag. */
export function flagName(key: string): string {
  return FLAG_NAMES[key as Key] ?? key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function set(config: Config, origins: Origins, key: string, value: unknown, origin: string): void {
  if (!Object.hasOwn(DEFAULTS, key)) throw new ConfigError(`${origin}: unknown setting ${key}`);
  const k = key as Key;
  origins[k] = origin;
  if (typeof DEFAULTS[k] === 'boolean') {
    const b = value === true || value === 'true' || value === '1' ? true : value === false || value === 'false' || value === '0' ? false : undefined;
    if (b === undefined) throw new ConfigError(`${origin}: ${key} must be true or false, got ${String(value)}`);
    (config as unknown as Record<string, unknown>)[k] = b;
  } else if (typeof DEFAULTS[k] === 'number') {
    const n = typeof value === 'number' ? value : Number(value);
    if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${origin}: ${key} must be a non-negative number, got ${String(value)}`);
    (config as unknown as Record<string, unknown>)[k] = n;
  } else {
    (config as unknown as Record<string, unknown>)[k] = String(value);
  }
}
