// The runner agent as a library (`createAgent`): the same agent `muster agent` runs, started in
// this process, with typed events and counters. Signals stay the embedder's business: the CLI
// ties SIGTERM to `drain()` (agent/main.ts); a library caller decides for itself.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { startAgent, type Agent, type AgentEvents } from '../agent/agent.js';
import type { AgentOptions } from '../agent/agent-options.js';
import { createLogger } from '../observability/logger.js';
import type { CodecName } from '../protocol/codec.js';
import '../transports/builtin.js';

export interface CreateAgentOptions {
  /** Control-plane URLs, tried in turn (`tcp://127.0.0.1:7420`, `unix:///...`, `wss://...`). */
  urls: string[];
  /** A registration token (`plane.mintToken('node')`, or `muster token create --role node`). */
  token: string;
  /** Where job workspaces and unacknowledged results are kept. */
  workDir: string;
  /** Shown as the node's name (the node tag `name`). */
  name?: string;
  tags?: Record<string, string>;
  codec?: CodecName;
  /** Default: a pino logger at `info` named `muster-agent`. */
  logger?: Logger;
  /** Any further agent setting (timeouts, limits, runner types). */
  agent?: Partial<AgentOptions>;
}

/** What an agent has done since it started. */
export interface AgentStats {
  registered: boolean;
  node_id?: string;
  registrations: number;
  disconnections: number;
  jobs_started: number;
  jobs_finished: number;
  jobs_running: number;
}

export class MusterAgent {
  readonly #agent: Agent;
  readonly #stats = { registrations: 0, disconnections: 0, jobs_started: 0, jobs_finished: 0 };

  constructor(agent: Agent) {
    this.#agent = agent;
    agent.events.on('registered', () => this.#stats.registrations++);
    agent.events.on('disconnected', () => this.#stats.disconnections++);
    agent.events.on('jobStarted', () => this.#stats.jobs_started++);
    agent.events.on('jobFinished', () => this.#stats.jobs_finished++);
  }

  /** The node id the plane gave, once registered. */
  get nodeId(): string | undefined {
    return this.#agent.nodeId;
  }

  on<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): () => void {
    this.#agent.events.on(event, listener as never);
    return () => this.#agent.events.off(event, listener as never);
  }

  /** Resolves once the agent is registered (at once when it already is). */
  registered(): Promise<string> {
    const nodeId = this.#agent.nodeId;
    if (this.#agent.isRegistered && nodeId !== undefined) return Promise.resolve(nodeId);
    return new Promise((done) => {
      const stop = this.on('registered', ({ node_id }) => {
        stop();
        done(node_id);
      });
    });
  }

  stats(): AgentStats {
    const nodeId = this.#agent.nodeId;
    return {
      registered: this.#agent.isRegistered,
      ...(nodeId === undefined ? {} : { node_id: nodeId }),
      ...this.#stats,
      jobs_running: this.#stats.jobs_started - this.#stats.jobs_finished,
    };
  }

  /** Takes no more jobs, lets running ones finish and their results be acknowledged, deregisters. */
  drain(): Promise<void> {
    return this.#agent.drain();
  }

  /** Closes at once and kills running jobs. */
  stop(): Promise<void> {
    return this.#agent.stop();
  }
}

/** Starts an agent connecting to `options.urls`; returns at once (await `registered()`). */
export function createAgent(options: CreateAgentOptions): MusterAgent {
  const workDir = resolve(options.workDir);
  mkdirSync(workDir, { recursive: true });
  const tags = { ...options.tags, ...(options.name === undefined ? {} : { name: options.name }) };
  return new MusterAgent(
    startAgent({
      urls: options.urls,
      token: options.token,
      workDir,
      codec: options.codec ?? 'msgpack',
      tags,
      logger: options.logger ?? createLogger({ name: 'muster-agent' }),
      ...options.agent,
    }),
  );
}
