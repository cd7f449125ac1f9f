// The runner agent (PROTOCOL.md sections 3 and 4, node side): dials a control plane,
// registers (resuming its session after the first time), heartbeats, takes jobs and
// returns their logs and results, and reconnects with backoff whenever the connection
// goes, trying its URLs in turn. Jobs keep running while it is disconnected.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { CodecName } from '../protocol/codec.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../protocol/frame-decoder.js';
import type { EnvelopeOf, MessageData, NodeStatus, PlaneMessage, ResultStatus } from '../protocol/messages.js';
import { encrypted } from '../transports/encrypted-connection.js';
import { HttpPeerError } from '../transports/http-sniff.js';
import { PayloadCipher } from '../transports/payload-cipher.js';
import { transportFor, type Connection, type DialOptions } from '../transports/transport.js';
import { Backoff } from './backoff.js';
import { collectHostFacts, UsageSampler } from './host-facts.js';
import { JobManager } from './job-manager.js';
import { RUNNER_TUNING_KEYS, type LogChunkData, type RunnerTuning } from './job-runner.js';
import { LogQueue } from './log-queue.js';
import { PlaneLink } from './plane-link.js';
import { checkPlaneUrls } from './plane-urls.js';
import { refusalLine } from './refusals.js';
import { ReconnectLoop } from './reconnect-loop.js';
import { ResultOutbox, type OutboxEntry } from './result-outbox.js';
import { inSpan, messageSpanOptions, MUSTER, SpanKind, startSpan, withSpan, type Span } from '../observability/spans.js';
import { childTraceparent, messageTraceparent } from './trace-context.js';
import { findArtifactFiles } from './artifact-files.js';
import { ArtifactUploads } from './artifact-upload.js';
import {
  AGENT_DEFAULTS,
  type AgentOptions,
} from './agent-options.js';

export type { AgentOptions, Dialer } from './agent-options.js';

// Errors that refuse a session token: the agent falls back to its registration token. Given for
// the registration token they can never succeed, so the agent gives up (refusals.ts).
const RESUME_REFUSALS: ReadonlySet<string> = new Set(['auth_failed', 'token_expired', 'token_revoked', 'forbidden']);

/** The protocol versions the agent speaks (PROTOCOL.md section 3). */
const AGENT_PROTOCOL_VERSIONS = [1, 2];

/**
 * The wire features it offers over `url` (PROTOCOL.md section 8): `deflate` on stream transports
 * without payload encryption, `batch` and `artifacts` on every one.
 */
function offeredFeatures(url: string, encrypted: boolean): string[] {
  const scheme = new URL(url).protocol;
  return !encrypted && (scheme === 'tcp:' || scheme === 'tls:' || scheme === 'unix:') ? ['deflate', 'batch', 'artifacts'] : ['batch', 'artifacts'];
}

/** What the agent tells its embedder (the library's `agent.on`), by event name. */
export interface AgentEvents {
  registered: [{ node_id: string; resumed: boolean; control_plane_id: string }];
  jobStarted: [{ job_id: string; attempt: number }];
  /** The job's process ended and its result is kept until the plane acknowledges it. */
  jobFinished: [{ job_id: string; attempt: number; status: ResultStatus; exit_code: number | null }];
  disconnected: [{ url: string; error?: string }];
}

export class Agent {
  /** Registration, jobs started and finished, disconnections. */
  readonly events = new EventEmitter<AgentEvents>();
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private readonly outbox: ResultOutbox;
  private readonly jobs: JobManager;
  private readonly logQueue: LogQueue;
  private readonly uploads: ArtifactUploads;
  private readonly usage = new UsageSampler();
  private readonly codec: CodecName;
  private link: PlaneLink | undefined;
  private registered = false;
  private resumeSent = false;
  private node: string | undefined;
  private sessionToken: string | undefined;
  private useSession = false;
  private draining = false;
  private stopped = false;
  private heartbeatIntervalMs: number;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private registerTimer: NodeJS.Timeout | undefined;
  private resendTimer: NodeJS.Timeout | undefined;
  private readonly loop: ReconnectLoop;
  private drained: Promise<void> | undefined;
  /** The span of the current connection (`node session`). */
  private sessionSpan: Span | undefined;
  private giveUpWith: ((reason: string) => void) | undefined;
  /** Resolves with one line when retrying cannot succeed (refused token, not a node listener); the agent has stopped. */
  readonly failed = new Promise<string>((resolve) => (this.giveUpWith = resolve));

  constructor(private readonly options: AgentOptions) {
    if (options.dial === undefined) checkPlaneUrls(options.urls);
    this.logger = options.logger;
    this.codec = options.codec ?? 'msgpack';
    this.backoff = new Backoff(options.backoff);
    this.loop = new ReconnectLoop({
      urls: options.urls,
      dial: (url) => this.dial(url),
      session: (conn, url) => this.session(conn, url),
      backoff: this.backoff,
      delayLimitMs: () => this.reconnectLimitMs(),
      logger: this.logger,
    });
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? AGENT_DEFAULTS.heartbeatIntervalMs;
    this.outbox = new ResultOutbox(options.workDir, this.logger);
    this.logQueue = new LogQueue(this.logger, options.maxQueuedLogBytes ?? AGENT_DEFAULTS.maxQueuedLogBytes);
    this.uploads = new ArtifactUploads({ logger: this.logger, binary: this.codec === 'msgpack' });
    this.jobs = new JobManager({
      workDir: options.workDir,
      outbox: this.outbox,
      logger: this.logger,
      runner: runnerTuning(options),
      ...(options.jobCgroups === undefined ? {} : { jobCgroups: options.jobCgroups }),
      nodeId: () => this.node ?? '',
      artifacts: async (job, cwd) => this.uploads.uploadAll(job.job_id, job.attempt, cwd, await findArtifactFiles(cwd, job.job.artifacts ?? [])),
      events: {
        chunk: (chunk, traceparent) => this.sendChunk(chunk, traceparent),
        result: (entry) => this.onJobResult(entry),
      },
    });
    if (this.outbox.size > 0) this.logger.info({ results: this.outbox.size }, 'unacked results from an earlier run');
    options.metrics?.readRunningJobs(() => this.jobs.activeJobs);
  }

  /** The node id from the last RegisterAck. */
  get nodeId(): string | undefined {
    return this.node;
  }

  /** True while a connection is registered. */
  get isRegistered(): boolean {
    return this.registered;
  }

  /** Starts connecting; returns at once. */
  start(): this {
    this.loop.start();
    return this;
  }

  /**
   * Takes no more jobs but keeps heartbeating, waits for running jobs to end and their
   * results to be acked (bounded), sends Deregister, closes. Resolves when done.
   */
  drain(): Promise<void> {
    this.drained ??= this.drainNow();
    return this.drained;
  }

  /** Closes at once and kills running jobs; for tests and a second signal. */
  async stop(): Promise<void> {
    // killAll signals every job before its first await, so a caller that exits right after calling stop() leaves no job behind.
    const killed = this.jobs.killAll();
    this.uploads.stop('agent stopping');
    await this.close();
    await killed;
  }

  private async drainNow(): Promise<void> {
    this.draining = true;
    this.logger.info({ active_jobs: this.jobs.activeJobs }, 'draining');
    this.sendHeartbeat();
    await this.jobs.idle();
    await this.waitUntil(() => this.outbox.size === 0, this.options.drainAckTimeoutMs ?? AGENT_DEFAULTS.drainAckTimeoutMs);
    if (this.outbox.size > 0) this.logger.warn({ results: this.outbox.size }, 'results not acked; kept for the next run');
    if (this.registered && this.node !== undefined) this.link?.send('Deregister', { node_id: this.node, reason: 'drained' });
    await this.close();
    this.logger.info('drained');
  }

  private async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.registerTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.resendTimer);
    const stopping = this.loop.stop();
    await this.link?.close();
    await stopping;
  }

  // ---- connections ----

  private get maxFrameBytes(): number {
    return this.options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  private dial(url: string): Promise<Connection> {
    const parsed = new URL(url);
    const options: DialOptions = {
      // The transport's limit is the read limit: frames between the two are refused by PlaneLink.
      maxFrameBytes: this.options.maxReadFrameBytes ?? AGENT_DEFAULTS.readLimitFactor * this.maxFrameBytes,
      maxSendBufferBytes: this.options.maxSendBufferBytes ?? AGENT_DEFAULTS.maxSendBufferBytes,
      connectTimeoutMs: this.options.connectTimeoutMs ?? AGENT_DEFAULTS.connectTimeoutMs,
    };
    if (this.options.tls !== undefined) options.tls = this.options.tls;
    const dialing = this.options.dial ? this.options.dial(parsed, options) : transportFor(parsed).dial(parsed, options);
    const key = this.options.encryptionKey;
    // A new cipher per connection: each has its own nonce sequence.
    return key === undefined ? dialing : dialing.then((conn) => encrypted(conn, new PayloadCipher(key)));
  }

  /** Runs one connection until it closes. */
  private session(conn: Connection, url: string): Promise<void> {
    // `node session`: one connection, from dial to close; its `RegisterNode` carries its context.
    this.sessionSpan = startSpan('node session', { kind: SpanKind.CLIENT, attributes: { 'server.address': redactedUrl(url) } });
    const span = this.sessionSpan;
    return new Promise((resolve) => {
      const link: PlaneLink = new PlaneLink(conn, this.codec, this.logger, {
        message: (message) => {
          if (link === this.link && !this.stopped) this.onMessage(link, message);
        },
        refused: (jobId, attempt, reason) => {
          if (link === this.link && !this.stopped && this.registered) this.onRefused(link, jobId, attempt, reason);
        },
        closed: (err) => {
          this.onClosed(link, url, err);
          if (err !== undefined) span.setAttribute('error.type', err.name);
          span.end();
          resolve();
        },
      }, this.maxFrameBytes);
      this.link = link;
      this.options.metrics?.connected();
      this.logger.info({ url, remote: conn.remoteAddress }, 'connected to control plane');
      link.start();
      if (!link.isClosed) withSpan(span, () => this.register(link, url));
    });
  }

  private register(link: PlaneLink, url: string): void {
    const facts = collectHostFacts({
      workDir: this.options.workDir,
      tags: this.options.tags ?? {},
      protocols: [...new Set(this.options.urls.map((u) => new URL(u).protocol.replace(/:$/, '')))],
      ...(this.options.runnerTypes ? { runnerTypes: this.options.runnerTypes } : {}),
      ...(this.options.supportedJobTypes ? { supportedJobTypes: this.options.supportedJobTypes } : {}),
      ...(this.options.nodeType ? { nodeType: this.options.nodeType } : {}),
    });
    const resuming = this.useSession && this.node !== undefined && this.sessionToken !== undefined;
    this.resumeSent = resuming;
    const data: MessageData<'RegisterNode'> = {
      ...facts,
      auth_token: resuming ? this.sessionToken! : this.options.token,
      protocol_versions: AGENT_PROTOCOL_VERSIONS,
      wire_features: offeredFeatures(url, this.options.encryptionKey !== undefined),
    };
    if (resuming) {
      data.resume = { node_id: this.node!, running_jobs: this.jobs.runningJobIds(), unacked_results: this.outbox.unacked() };
    }
    link.send('RegisterNode', data, messageTraceparent());
    this.registerTimer = setTimeout(() => {
      this.logger.warn('no RegisterAck in time; reconnecting');
      void link.close();
    }, this.options.registerTimeoutMs ?? AGENT_DEFAULTS.registerTimeoutMs);
  }

  private onClosed(link: PlaneLink, url: string, err?: Error): void {
    if (link !== this.link) return;
    this.link = undefined;
    this.registered = false;
    this.options.metrics?.disconnected();
    clearTimeout(this.registerTimer);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.resendTimer);
    this.uploads.linkDown();
    if (err instanceof HttpPeerError) return this.giveUp(`${url}: ${err.message}`);
    // A message, not a stack: a dropped connection is expected, and its cause says enough.
    if (!this.stopped) this.logger.warn({ url, ...(err === undefined ? {} : { error: err.message }) }, 'disconnected from control plane');
    this.events.emit('disconnected', { url, ...(err === undefined ? {} : { error: err.message }) });
  }

  // ---- messages from the control plane ----

  private onMessage(link: PlaneLink, message: PlaneMessage): void {
    if (!this.registered && message.type !== 'RegisterAck' && message.type !== 'Error' && message.type !== 'Shutdown') {
      this.logger.warn({ type: message.type }, 'ignoring message before RegisterAck');
      return;
    }
    switch (message.type) {
      case 'RegisterAck':
        return this.onRegisterAck(link, message.data);
      case 'JobAssignment':
        return this.onAssignment(link, message);
      case 'JobResultAck': {
        const { job_id, attempt } = message.data;
        const options = messageSpanOptions('process', 'JobResultAck', { [MUSTER.jobId]: job_id, [MUSTER.attempt]: attempt });
        inSpan('process JobResultAck', options, message.traceparent ?? this.jobs.traceOf(job_id, attempt), () => this.jobs.ack(job_id, attempt));
        return;
      }
      case 'CancelJob':
        if (!this.jobs.cancel(message.data)) this.logger.info({ job_id: message.data.job_id }, 'cancel for a job not running here');
        return;
      case 'Drain':
        return this.onDrain();
      case 'Undrain':
        return this.onUndrain();
      case 'Shutdown':
        this.logger.warn({ reason: message.data.reason }, 'control plane shutting down; reconnecting');
        void link.close();
        return;
      case 'TokenRefresh':
        this.sessionToken = message.data.session_token;
        return;
      case 'Configure':
        this.heartbeatIntervalMs = message.data.heartbeat_interval_ms;
        this.startHeartbeat();
        return;
      case 'LogResync':
        return this.onLogResync(link, message.data);
      case 'ArtifactAck':
        this.uploads.onAck(message.data);
        return;
      case 'Error':
        return this.onError(link, message.data, message.reply_to);
    }
  }

  /**
   * While it holds jobs (running, or results not acked), a registered agent tries again at
   * least once per heartbeat interval: a restarted plane keeps those jobs for it only for a
   * few intervals (PROTOCOL.md 4.2, 4.6) before it requeues them, and a long backoff would
   * have the job run twice. Without jobs, the full backoff spares a plane that is down.
   */
  private reconnectLimitMs(): number | undefined {
    if (this.node === undefined) return undefined;
    return this.jobs.activeJobs > 0 || this.outbox.size > 0 ? this.heartbeatIntervalMs : undefined;
  }

  private onRegisterAck(link: PlaneLink, ack: MessageData<'RegisterAck'>): void {
    clearTimeout(this.registerTimer);
    this.registered = true;
    this.options.metrics?.registered();
    this.node = ack.node_id;
    this.sessionToken = ack.session_token;
    this.useSession = true;
    this.heartbeatIntervalMs = ack.heartbeat_interval_ms;
    // Compression: the protocol's `deflate` on stream transports, else the transport's own (gRPC).
    const compressMin = ack.compress_min_bytes ?? 1024;
    if (ack.wire_features?.includes('deflate') === true) link.compressFrom = compressMin;
    else link.useTransportCompression(compressMin);
    if (ack.wire_features?.includes('batch') === true) link.useBatches();
    // Uploads under way go on from where the plane stands; a plane without `artifacts` takes none.
    if (ack.wire_features?.includes('artifacts') === true) this.uploads.linkUp(link, ack.artifact_window_bytes ?? 4 * 1024 * 1024);
    else this.uploads.stop('the control plane did not turn artifacts on');
    this.backoff.reset();
    this.sessionSpan?.setAttributes({ [MUSTER.nodeId]: ack.node_id, [MUSTER.replica]: ack.control_plane_id, [MUSTER.resumed]: ack.resumed });
    this.logger.info({ node_id: ack.node_id, resumed: ack.resumed, control_plane_id: ack.control_plane_id, protocol_version: ack.protocol_version }, 'registered');
    this.events.emit('registered', { node_id: ack.node_id, resumed: ack.resumed, control_plane_id: ack.control_plane_id });
    this.startHeartbeat();
    // Logs first, then results: the plane has an attempt's output before its end.
    for (const { chunk, traceparent } of this.logQueue.drain()) {
      link.send('LogChunk', chunk, traceparent);
      this.countLog(chunk);
    }
    for (const entry of this.outbox.pending()) this.sendResult(link, entry);
    this.startResending();
  }

  /** In a `process JobAssignment` span under the plane's `send JobAssignment`: the answer, and the job's `job run`, are its children. */
  private onAssignment(link: PlaneLink, message: EnvelopeOf<'JobAssignment'>): void {
    const { job_id, attempt } = message.data;
    const options = messageSpanOptions('process', 'JobAssignment', { [MUSTER.jobId]: job_id, [MUSTER.attempt]: attempt });
    inSpan('process JobAssignment', options, message.traceparent, () => this.takeAssignment(link, message));
  }

  private takeAssignment(link: PlaneLink, message: EnvelopeOf<'JobAssignment'>): void {
    const { job_id, attempt } = message.data;
    const trace = messageTraceparent(message.traceparent);
    if (this.jobs.isRunning(job_id, attempt) || this.outbox.has(job_id, attempt)) {
      // A repeat (e.g. after a resume): answer again, and resend the result if it is already there.
      link.send('JobAccepted', { job_id, attempt }, trace);
      const done = this.outbox.pending().find((e) => e.result.job_id === job_id && e.result.attempt === attempt);
      if (done !== undefined) this.sendResult(link, done);
      return;
    }
    const reason = this.draining || this.stopped ? 'draining' : this.jobs.refusal(message.data);
    if (reason !== undefined) {
      this.options.metrics?.jobRejected(reason);
      this.logger.info({ job_id, attempt, reason }, 'job rejected');
      link.send('JobRejected', { job_id, attempt, reason }, trace);
      return;
    }
    link.send('JobAccepted', { job_id, attempt }, trace);
    this.jobs.start(message);
    this.events.emit('jobStarted', { job_id, attempt });
    this.sendHeartbeat();
  }

  /** An assignment PlaneLink could not take (too large, or invalid): that job only is refused. */
  private onRefused(link: PlaneLink, jobId: string, attempt: number, reason: string): void {
    // Already running or done here (a repeat): what the agent has stands.
    if (this.jobs.isRunning(jobId, attempt) || this.outbox.has(jobId, attempt)) return;
    this.options.metrics?.jobRejected(reason);
    this.logger.warn({ job_id: jobId, attempt, reason }, 'job rejected');
    link.send('JobRejected', { job_id: jobId, attempt, reason }, childTraceparent());
  }

  private onLogResync(link: PlaneLink, data: MessageData<'LogResync'>): void {
    const chunks = this.jobs.resync(data);
    if (chunks === undefined) {
      this.logger.warn({ job_id: data.job_id, attempt: data.attempt, stream: data.stream }, 'log resync for output no longer held');
      return;
    }
    const trace = this.jobs.traceOf(data.job_id, data.attempt);
    for (const chunk of chunks) {
      link.send('LogChunk', chunk, trace ?? childTraceparent());
      this.countLog(chunk);
    }
  }

  private onError(link: PlaneLink, error: MessageData<'Error'>, replyTo: string | undefined): void {
    const fields = { code: error.code, field: error.field, error_message: error.message };
    if (!error.fatal) {
      // A refused artifact ends its upload; the job's result then leaves it out.
      if (this.uploads.onError(error, replyTo)) return this.logger.warn(fields, 'control plane refused an artifact');
      const refused = replyTo === undefined ? undefined : this.outbox.sentAs(replyTo);
      if (refused !== undefined && isForeignAttempt(error)) return this.dropForeignResult(refused);
      // Anything else about a result (a store failure, say) leaves it for the resend timer.
      this.logger.warn(fields, 'control plane reported an error');
      return;
    }
    if (!this.registered && !this.resumeSent && RESUME_REFUSALS.has(error.code)) {
      return this.giveUp(refusalLine(error));
    }
    if (error.code === 'unsupported_version') {
      // Another URL (a replica already upgraded, say) may speak a version in common: keep trying.
      this.logger.error({ ...fields, speaks: AGENT_PROTOCOL_VERSIONS }, 'no protocol version in common with this control plane; upgrade one of them; trying again');
    } else {
      this.logger.error(fields, 'fatal error from control plane; reconnecting');
    }
    if (!this.registered && this.resumeSent && RESUME_REFUSALS.has(error.code)) {
      this.logger.warn('session refused; registering afresh with the registration token');
      this.useSession = false;
    }
    void link.close();
  }

  /** Stops for good (running jobs are killed, their results kept) and reports `reason` through `failed`. */
  private giveUp(reason: string): void {
    if (this.stopped) return;
    this.logger.error({ reason }, 'giving up: retrying cannot succeed');
    void this.stop().then(() => this.giveUpWith?.(reason));
  }

  /**
   * The plane says this node never held the attempt: after a refused resume (or a restart
   * of the agent, which keeps no session) the agent is a new node, and a result saved under
   * its old identity can never be stored from this one. Kept,
   * it would be resent forever; the plane requeues that attempt when the old node expires.
   */
  private dropForeignResult(entry: OutboxEntry): void {
    const { job_id, attempt } = entry.result;
    this.jobs.ack(job_id, attempt);
    this.logger.warn({ job_id, attempt, node_id: this.node }, 'result refused: this node never held the attempt (an earlier identity did); dropped');
  }

  private onDrain(): void {
    if (this.draining) return;
    this.draining = true;
    this.logger.info('control plane asked to drain; taking no new jobs');
    this.sendHeartbeat();
  }

  /** The plane takes its `Drain` back; a drain of our own (a signal) is not undone. */
  private onUndrain(): void {
    if (!this.draining || this.drained !== undefined) return;
    this.draining = false;
    this.logger.info('control plane undrained this node; taking jobs again');
    this.sendHeartbeat();
  }

  // ---- what the agent sends ----

  private startHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.sendHeartbeat();
    this.heartbeatTimer = setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
  }

  private sendHeartbeat(): void {
    if (!this.registered || this.link === undefined || this.node === undefined) return;
    const sample = this.usage.sample(this.jobs.reserved());
    const full = sample.resources.available_cpu <= 0 || sample.resources.available_memory_mb <= 0;
    const status: NodeStatus = this.draining ? 'Draining' : full ? 'Busy' : 'Ready';
    this.link.send(
      'Heartbeat',
      {
        node_id: this.node,
        status,
        resources: sample.resources,
        metrics: {
          cpu_usage_percent: sample.cpuUsagePercent,
          memory_usage_percent: sample.memoryUsagePercent,
          active_jobs: this.jobs.activeJobs,
          completed_jobs: this.jobs.completedJobs,
          failed_jobs: this.jobs.failedJobs,
        },
        timestamp: new Date().toISOString(),
      },
      childTraceparent(),
    );
  }

  /** The link to send on now, or undefined while there is no registered, open connection. */
  private liveLink(): PlaneLink | undefined {
    return this.registered && this.link !== undefined && !this.link.isClosed ? this.link : undefined;
  }

  private sendChunk(chunk: LogChunkData, traceparent: string): void {
    const link = this.liveLink();
    if (link !== undefined) {
      link.send('LogChunk', chunk, traceparent);
      this.countLog(chunk);
    } else {
      this.logQueue.push({ chunk, traceparent });
    }
  }

  private countLog(chunk: LogChunkData): void {
    this.options.metrics?.logSent(Buffer.byteLength(chunk.data));
  }

  private onJobResult(entry: OutboxEntry): void {
    const { job_id, attempt, result } = entry.result;
    this.events.emit('jobFinished', { job_id, attempt, status: result.status, exit_code: result.exit_code });
    this.options.metrics?.jobEnded(entry.result.result.status, entry.result.metrics.duration_ms);
    const link = this.liveLink();
    if (link !== undefined) this.sendResult(link, entry);
    // A freed slot changes the node's status.
    this.sendHeartbeat();
  }

  private sendResult(link: PlaneLink, entry: OutboxEntry): void {
    // The node id is the current one: a refused resume may have given this agent a new one.
    const data = this.node === undefined ? entry.result : { ...entry.result, node_id: this.node };
    const { job_id, attempt } = entry.result;
    // Each send (a resend too) is a `send JobResult` under the job's `job run`; the plane's `process JobResult` hangs under it.
    const options = messageSpanOptions('send', 'JobResult', { [MUSTER.jobId]: job_id, [MUSTER.attempt]: attempt, [MUSTER.status]: entry.result.result.status });
    const messageId = inSpan('send JobResult', options, entry.traceparent, () => link.send('JobResult', data, messageTraceparent(entry.traceparent)));
    this.outbox.markSent(job_id, attempt, Date.now(), messageId);
  }

  /**
   * Rule 4 of PROTOCOL.md section 4 asks for a resend after a reconnect; a result the plane
   * answered with a non-fatal error (it could not store it) needs one on the same connection.
   */
  private startResending(): void {
    clearInterval(this.resendTimer);
    const intervalMs = this.options.resultResendIntervalMs ?? AGENT_DEFAULTS.resultResendIntervalMs;
    this.resendTimer = setInterval(() => {
      const link = this.liveLink();
      if (link === undefined) return;
      const due = this.outbox.dueForResend(Date.now(), intervalMs);
      if (due.length > 0) this.logger.info({ results: due.length }, 'resending results not acked in time');
      for (const entry of due) this.sendResult(link, entry);
    }, intervalMs);
  }

  private async waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!done() && Date.now() < until && !this.stopped) await new Promise((r) => setTimeout(r, 50));
  }
}

/** The plane's refusal of a job message for an attempt the sending node never held (PROTOCOL.md 4.5). */
function isForeignAttempt(error: MessageData<'Error'>): boolean {
  return error.code === 'invalid_message' && error.field === 'data.job_id';
}

/** The plane's URL for a span: scheme, host and port only (a URL may carry credentials). */
function redactedUrl(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}${parsed.protocol === 'unix:' ? parsed.pathname : ''}`;
}

/** Creates an agent and starts it connecting. */
export function startAgent(options: AgentOptions): Agent {
  return new Agent(options).start();
}

/** The job runner's settings among the agent's options: those given (the runner defaults the rest). */
function runnerTuning(options: AgentOptions): RunnerTuning {
  const tuning: RunnerTuning = {};
  for (const key of RUNNER_TUNING_KEYS) if (options[key] !== undefined) tuning[key] = options[key];
  return tuning;
}
