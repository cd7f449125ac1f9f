// The control plane as a library (`createControlPlane`): the same plane `muster serve` runs,
// with typed events for what happens to nodes and jobs, handlers for node messages, messages to
// a node, job submission, stats, and tokens for agents. It adds no behaviour of its own: events
// come from the plane's bus, submissions go through the admin API's own validation.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { NodeState } from '../actors/node-machine.js';
import { createLogger } from '../observability/logger.js';
import { MusterError } from '../protocol/errors.js';
import type { MessageData, NodeMessageType } from '../protocol/messages.js';
import { toNewJob, toNewJobs, type SubmitJobRequest } from '../supervisor/admin/job-request.js';
import type { BusEvent } from '../supervisor/bus/bus.js';
import { loadConfig, type Config } from '../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../supervisor/control-plane.js';
import type { MessageHandler } from '../supervisor/nodes/message-tap.js';
import { TERMINAL_STATES, type JobRecord, type JobState, type LogRecord } from '../supervisor/store/job-store.js';
import type { MintAnswer } from '../supervisor/admin/wire-types.js';
import type { ApiRole } from '../supervisor/tokens/tokens.js';

export interface PlaneOptions {
  /** Any settings of the README's configuration table; the rest keep their defaults (then `MUSTER_*` variables, unless `env` is given). */
  config?: Partial<Config>;
  /** The environment `MUSTER_*` settings are read from; default `process.env`. Pass `{}` to ignore it. */
  env?: NodeJS.ProcessEnv;
  /** Where the plane logs; default a pino logger at `config.logLevel`. */
  logger?: Logger;
}

export interface NodeEvent {
  node_id: string;
  state: NodeState;
  /** The replica that owns the node. */
  owner: string;
}

export interface JobEvent {
  job_id: string;
  state: JobState;
  attempt: number;
  node_id?: string;
}

/** The events of `plane.on`. */
export interface PlaneEvents {
  /** A node registered (or resumed after it was gone) and is in service. */
  nodeRegistered: [NodeEvent];
  /** Any change of a node's state (`ready`, `busy`, `draining`, `dead`). */
  nodeStateChanged: [NodeEvent];
  /** A node is dead: its connection and its grace are over. */
  nodeGone: [NodeEvent];
  /** Any change of a job's state. */
  jobStateChanged: [JobEvent];
  /** A job reached a final state (`Completed`, `Failed`, `Cancelled`, `TimedOut`, `DeadLettered`). */
  jobFinished: [JobEvent];
}

/** Messages an embedder may send to a node; the others (assignments, acks) are the plane's own bookkeeping. */
export type SendableType = 'CancelJob' | 'Drain' | 'Configure';
const SENDABLE: ReadonlySet<string> = new Set<SendableType>(['CancelJob', 'Drain', 'Configure']);

export class MusterPlane {
  readonly #plane: ControlPlane;
  readonly #events = new EventEmitter<PlaneEvents>();
  /** Nodes in service, for `nodeRegistered` (the bus tells states, not arrivals). */
  readonly #live = new Set<string>();
  readonly #unsubscribe: () => void;

  constructor(plane: ControlPlane) {
    this.#plane = plane;
    this.#unsubscribe = plane.bus.subscribe((event) => this.#heard(event));
  }

  /** The replica's id (`RegisterAck.control_plane_id`). */
  get id(): string {
    return this.#plane.id;
  }

  /** Where nodes connect (`tcp://127.0.0.1:7420`, ...). */
  get nodeUrls(): readonly string[] {
    return this.#plane.nodeUrls;
  }

  /** The admin HTTP API's address; empty when it is off. */
  get httpUrl(): string {
    return this.#plane.httpUrl;
  }

  on<K extends keyof PlaneEvents>(event: K, listener: (...args: PlaneEvents[K]) => void): () => void {
    this.#events.on(event, listener as never);
    return () => this.#events.off(event, listener as never);
  }

  /**
   * Calls `handler` with every message of `type` from a registered node, after the plane has
   * handled it; returns the function that stops it. A handler sees; it cannot stop the plane's handling.
   */
  onMessage<T extends NodeMessageType>(type: T, handler: MessageHandler<T>): () => void {
    return this.#plane.messages.add(type, handler);
  }

  /** Sends a message to a connected node; false when it is not connected. */
  sendToNode<T extends SendableType>(nodeId: string, type: T, data: MessageData<T>): boolean {
    if (!SENDABLE.has(type)) throw new MusterError('invalid_message', `${type} cannot be sent by an embedder (only ${[...SENDABLE].join(', ')})`);
    const session = this.#plane.session(nodeId);
    session?.send(type, data);
    return session !== undefined;
  }

  /** Submits a job as `POST /v1/jobs` does (same fields, same defaults, same checks). */
  async submitJob(request: SubmitJobRequest): Promise<JobRecord> {
    return this.#plane.api.submitJob(toNewJob(request, this.#plane.api.defaults));
  }

  /** Submits 1 to 1,000 jobs, all stored or none. */
  async submitJobs(requests: readonly SubmitJobRequest[]): Promise<JobRecord[]> {
    return this.#plane.api.submitJobs(toNewJobs({ jobs: requests }, this.#plane.api.defaults));
  }

  getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.#plane.api.getJob(jobId);
  }

  /** The job's stored log chunks, every attempt, in order (empty for an unknown job). */
  async jobLogs(jobId: string): Promise<LogRecord[]> {
    return (await this.#plane.api.jobLogs(jobId)) ?? [];
  }

  /** Resolves with the job's record once it reached a final state. */
  async waitForJob(jobId: string): Promise<JobRecord> {
    const ended = new Promise<void>((resolve) => {
      const stop = this.on('jobFinished', (event) => {
        if (event.job_id !== jobId) return;
        stop();
        resolve();
      });
      void this.getJob(jobId).then((job) => {
        if (job !== undefined && TERMINAL_STATES.has(job.state)) {
          stop();
          resolve();
        }
      });
    });
    await ended;
    const job = await this.getJob(jobId);
    if (job === undefined) throw new MusterError('internal', `job ${jobId} vanished`);
    return job;
  }

  /** The plane's counters (`GET /v1/stats`). */
  stats(): Promise<Record<string, number>> {
    return this.#plane.api.stats();
  }

  /** Mints and records a token: `node` for an agent's registration (bound to `sub`, its hostname, when given), or an API role. */
  mintToken(role: 'node' | ApiRole, options: { sub?: string; ttlSeconds?: number } = {}): Promise<MintAnswer> {
    return this.#plane.tokenAdmin.mint({ role, ttlSeconds: options.ttlSeconds ?? 3600, ...(options.sub === undefined ? {} : { sub: options.sub }) });
  }

  /** Sends every node `Shutdown`, stops listening and closes the store. */
  async close(reason?: string): Promise<void> {
    this.#unsubscribe();
    await this.#plane.shutdown(reason);
  }

  #heard(event: BusEvent): void {
    if (event.kind === 'node') {
      const node: NodeEvent = { node_id: event.node_id, state: event.state, owner: event.owner };
      const arrived = event.state !== 'dead' && !this.#live.has(event.node_id);
      if (event.state === 'dead') this.#live.delete(event.node_id);
      else this.#live.add(event.node_id);
      if (arrived) this.#events.emit('nodeRegistered', node);
      this.#events.emit('nodeStateChanged', node);
      if (event.state === 'dead') this.#events.emit('nodeGone', node);
    } else if (event.kind === 'job') {
      const job: JobEvent = { job_id: event.job_id, state: event.state, attempt: event.attempt, ...(event.node_id === undefined ? {} : { node_id: event.node_id }) };
      this.#events.emit('jobStateChanged', job);
      if (TERMINAL_STATES.has(event.state)) this.#events.emit('jobFinished', job);
    }
  }
}

/** Starts a control plane in this process, as `muster serve` with `options.config`. */
export async function createControlPlane(options: PlaneOptions = {}): Promise<MusterPlane> {
  const overrides = Object.fromEntries(Object.entries(options.config ?? {}).filter(([, v]) => v !== undefined)) as Partial<Record<keyof Config, string | number | boolean>>;
  const config = loadConfig({ env: options.env ?? process.env, overrides });
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  return new MusterPlane(await startControlPlane(config, logger));
}
