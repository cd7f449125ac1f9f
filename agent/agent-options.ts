// The settings of the runner agent, and every timeout and limit's default in one place
// (AGENT_DEFAULTS): the modules that use one take its default from here.
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentMetrics } from '../observability/agent-metrics.js';
import type { CodecName } from '../protocol/codec.js';
import type { ClientTlsOptions, Connection, DialOptions } from '../transports/transport.js';
import type { BackoffOptions } from './backoff.js';

/** The default of each option below (and of `BackoffOptions`), by its name. */
export const AGENT_DEFAULTS = {
  maxSendBufferBytes: 8 * 1024 * 1024,
  /** `maxReadFrameBytes` by default, as a multiple of `maxFrameBytes`. */
  readLimitFactor: 4,
  connectTimeoutMs: 10_000,
  registerTimeoutMs: 15_000,
  heartbeatIntervalMs: 5_000,
  resultResendIntervalMs: 10_000,
  drainAckTimeoutMs: 10_000,
  killGraceMs: 5_000,
  flushIntervalMs: 100,
  maxChunkBytes: 64 * 1024,
  resultTailBytes: 64 * 1024,
  pipeCloseWaitMs: 2_000,
  memorySampleIntervalMs: 250,
  maxQueuedLogBytes: 8 * 1024 * 1024,
  backoffBaseMs: 250,
  backoffCapMs: 30_000,
  /** A job's cgroup is removed once its killed processes have left: tried this often, this far apart (not options). */
  cgroupRemoveTries: 40,
  cgroupRemoveRetryMs: 25,
} as const;

/** Opens a connection to one control-plane URL. */
export type Dialer = (url: URL, options: DialOptions) => Promise<Connection>;

export interface AgentOptions {
  /** Control-plane URLs (`tcp://host:port`, `unix:///path` ...), tried in turn. */
  urls: string[];
  /** The registration token (JWT with scope `node:register`). */
  token: string;
  /** Jobs run in subdirectories of it; unacked results live in its `.outbox/`. */
  workDir: string;
  /** Codec of everything the agent sends. Default `msgpack`. */
  codec?: CodecName;
  /** Node tags, from `--tag k=v`. */
  tags?: Record<string, string>;
  logger: Logger;
  /**
   * Largest frame (codec byte and body) the agent takes; a JobAssignment over it is answered
   * JobRejected. Default 1 MiB, the protocol's `max_frame_bytes`.
   */
  maxFrameBytes?: number;
  /**
   * Frames up to this size are still read whole, so that refusing one over `maxFrameBytes`
   * costs that frame only and not the connection (and the jobs assigned alongside it);
   * past it the transport must close the connection. Default 4 × `maxFrameBytes`, as the
   * protocol's message-transport limits.
   */
  maxReadFrameBytes?: number;
  maxSendBufferBytes?: number;
  /** Give up dialling one URL after this long. Default 10 s. */
  connectTimeoutMs?: number;
  /** Close and retry when no RegisterAck comes within this long. Default 15 s. */
  registerTimeoutMs?: number;
  /** Heartbeat interval until the control plane names one. Default 5 s. */
  heartbeatIntervalMs?: number;
  /**
   * A JobResult not acked within this long is sent again on the same connection (the plane
   * may have failed to store it, e.g. a full disk); it is also sent again after every
   * reconnect. Default 10 s.
   */
  resultResendIntervalMs?: number;
  /** How long a drain waits for the acks of the last results before it deregisters. Default 10 s. */
  drainAckTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when a job times out or is cancelled. Default 5 s. */
  killGraceMs?: number;
  /** A job's output is sent at least this often. Default 100 ms. */
  flushIntervalMs?: number;
  /** Largest LogChunk `data`, in bytes. Default 64 KiB. */
  maxChunkBytes?: number;
  /** How much of each output stream's end a JobResult keeps (`stdout`, `stderr`), in bytes. Default 64 KiB. */
  resultTailBytes?: number;
  /** After a job's process exits, how long its output pipes may stay open (held by a descendant that left its group). Default 2 s. */
  pipeCloseWaitMs?: number;
  /** How often a job's peak memory is sampled. Default 250 ms. */
  memorySampleIntervalMs?: number;
  /**
   * Run each job in a cgroup (v2) of its own, killed as a whole at the job's end, where the
   * agent may make cgroups (root, or a delegated subtree). Default true.
   */
  jobCgroups?: boolean;
  /** Bound of log output queued while disconnected. Default 8 MiB. */
  maxQueuedLogBytes?: number;
  /** Reconnect delays; while jobs are held, none is longer than the heartbeat interval. */
  backoff?: BackoffOptions;
  runnerTypes?: string[];
  supportedJobTypes?: string[];
  nodeType?: string;
  /** CA, client certificate and key (PEM text) for `tls://`, `wss://` and `grpcs://` URLs. */
  tls?: ClientTlsOptions;
  /**
   * Payload encryption key (PROTOCOL.md section 6; `loadEncryptionKey` of
   * transports/payload-cipher.ts), the one of the plane's listeners: every frame on every
   * connection is then encrypted. Default none.
   */
  encryptionKey?: KeyObject;
  /** How to open connections; default: the transport registered for the URL's scheme. */
  dial?: Dialer;
  /** Where the agent counts its jobs, connections and output (`--metrics`); default: not counted. */
  metrics?: AgentMetrics;
}
