// Every metric of the runner agent, on a registry of its own (tests run several agents in
// one process), served by `muster agent --metrics HOST:PORT` (metrics-server.ts). The agent
// calls the small methods below where things happen; prom-client reads the numbers at scrape.
// The README's metrics table lists every name defined here (a test checks it).
import { Registry } from 'prom-client';
import { CountingHistogram } from './counting-histogram.js';
import { registerProcessMetrics } from './process-metrics.js';
import { LabelledCount, labelledCounter, labelledGauge, readCounter, readGauge } from './scraped-metrics.js';

/** Where the agent's link to its control plane stands. */
export type AgentConnectionState = 'disconnected' | 'connected' | 'registered';

const CONNECTION_STATES: readonly AgentConnectionState[] = ['disconnected', 'connected', 'registered'];
const JOB_DURATION_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600];

export class AgentMetrics {
  readonly registry = new Registry();
  private state: AgentConnectionState = 'disconnected';
  private connections = 0;
  private logBytes = 0;
  private readonly outcomes = new LabelledCount();
  private readonly rejections = new LabelledCount();
  private readonly durations: CountingHistogram;
  private runningJobs: () => number = () => 0;

  constructor(options: { processMetrics?: boolean } = {}) {
    const r = this.registry;
    labelledCounter(r, { name: 'muster_agent_jobs_total', help: 'Jobs this agent ran to an end, by outcome (the result status).', labelNames: ['outcome'] }, this.outcomes);
    labelledCounter(r, { name: 'muster_agent_jobs_rejected_total', help: 'Job assignments this agent answered JobRejected, by reason (draining; resources: not enough cpu, memory or disk; invalid: too large or not valid).', labelNames: ['reason'] }, this.rejections);
    this.durations = new CountingHistogram(
      { name: 'muster_agent_job_duration_seconds', help: 'How long jobs ran on this agent, by outcome.', buckets: JOB_DURATION_BUCKETS, labelName: 'outcome' },
      r,
    );
    readGauge(r, { name: 'muster_agent_running_jobs', help: 'Jobs running on this agent now.' }, () => this.runningJobs());
    labelledGauge(r, { name: 'muster_agent_connection_state', help: 'The link to the control plane: 1 for the state it is in, 0 for the others.', labelName: 'state' }, () =>
      CONNECTION_STATES.map((s): [string, number] => [s, s === this.state ? 1 : 0]),
    );
    readCounter(r, { name: 'muster_agent_reconnects_total', help: 'Connections to a control plane opened after the first.' }, () => Math.max(0, this.connections - 1));
    readCounter(r, { name: 'muster_agent_log_sent_bytes_total', help: 'Bytes of job output sent to the control plane (LogChunk data, UTF-8).' }, () => this.logBytes);
    if (options.processMetrics ?? true) registerProcessMetrics(r);
  }

  /** Where the running-jobs gauge reads from (the agent's job manager). */
  readRunningJobs(read: () => number): void {
    this.runningJobs = read;
  }

  /** A connection to a control plane opened (the first, or a reconnect). */
  connected(): void {
    this.connections++;
    this.state = 'connected';
  }

  /** A RegisterAck came: the agent takes jobs on this connection. */
  registered(): void {
    this.state = 'registered';
  }

  disconnected(): void {
    this.state = 'disconnected';
  }

  /** A job ended with `outcome` (Completed, Failed, Cancelled, TimedOut) after `durationMs`. */
  jobEnded(outcome: string, durationMs: number): void {
    this.outcomes.add(outcome);
    this.durations.observeBy(outcome, Math.max(0, durationMs) / 1000);
  }

  /** An assignment was refused; `reason` is reduced to a bounded kind for the label. */
  jobRejected(reason: string): void {
    this.rejections.add(rejectionKind(reason));
  }

  /** A LogChunk went to the plane with `bytes` of output. */
  logSent(bytes: number): void {
    this.logBytes += bytes;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A refusal's reason as one of a few label values: reasons are free text (a label must not be). */
function rejectionKind(reason: string): string {
  if (reason === 'draining') return 'draining';
  if (reason.startsWith('insufficient ')) return 'resources';
  return 'invalid';
}
