// The running control plane as the admin HTTP API sees it (plane-api.ts `PlaneApi`): jobs
// through the store and the job coordinator, nodes through the registry (their state is
// their actors'), and the plane's metrics (observability/plane-metrics.ts) for `/v1/stats` and
// `/metrics`, whose gauges it points at the registry, the scheduler's queue and the store.
import { submitSpans } from '../jobs/job-trace.js';
import type { NodeBreaker } from '../jobs/node-breaker.js';
import type { Logger } from 'pino';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import type { NodeState } from '../../actors/node-machine.js';
import type { Priority } from '../../protocol/messages.js';
import type { Bus, BusEvent } from '../bus/bus.js';
import type { Config } from '../config.js';
import type { JobCoordinator } from '../jobs/job-coordinator.js';
import { pipelineApi } from '../jobs/pipeline-api.js';
import type { Scheduler } from '../jobs/scheduler.js';
import type { NodeIntake } from '../nodes/node-intake.js';
import { viewOf, type NodeRegistry } from '../nodes/node-registry.js';
import { undrainSession } from '../nodes/node-undrain.js';
import type { JobRecord, JobStore, LogRecord, NewJob, OwnerToken } from '../store/job-store.js';
import { onePerNode, type ClusterPeers } from '../cluster/cluster-peers.js';
import type { RemoteNodeViews } from '../cluster/remote-node-views.js';
import type { PlaneApi, UndrainOutcome } from './plane-api.js';
import type { ClusterView, NodeDetail, NodeView, WaitingFor } from './wire-types.js';
import { packageVersion } from '../package-version.js';

export interface PlaneApiParts {
  config: Pick<Config, 'maxAttempts' | 'defaultJobTimeoutMs' | 'maxFrameBytes'>;
  logger: Logger;
  store: JobStore;
  /** The fencing token of the API's job writes (see `OwnerToken`). */
  owner: OwnerToken;
  bus: Bus;
  coordinator: JobCoordinator;
  /** Told of each submitted job at once (no store read), and asked why a queued job waits. */
  scheduler: Pick<Scheduler, 'enqueue' | 'waitingFor' | 'queueDepth'>;
  registry: NodeRegistry;
  intake: NodeIntake;
  /** This replica's id (`control_plane_id`). */
  controlPlaneId: string;
  /** Which nodes are benched, and lifting a bench. */
  breaker: Pick<NodeBreaker, 'benched' | 'lift'>;
  metrics: PlaneMetrics;
  /** Asks the scheduler for a pass: a job was queued. */
  wakeScheduler(): void;
  /** A cluster replica's view of the other replicas; undefined for the embedded plane. */
  peers?: ClusterPeers;
  /** Why the plane is not ready beside its store (a replica cut off from NATS); undefined when it is. */
  notReady?(): string | undefined;
  /** The other replicas' nodes for the live feed; undefined for the embedded plane. */
  remoteViews?: Pick<RemoteNodeViews, 'list' | 'get'>;
}

export class PlaneApiImpl implements PlaneApi {
  readonly defaults: PlaneApi['defaults'];
  // Pipelines (batch submit, listing, attempts, retry) are their own unit in jobs/.
  readonly submitJobs: PlaneApi['submitJobs'];
  readonly listJobs: PlaneApi['listJobs'];
  readonly jobAttempts: PlaneApi['jobAttempts'];
  readonly retryJob: PlaneApi['retryJob'];

  private readonly startedAt = new Date().toISOString();
  private readonly version = packageVersion();

  constructor(private readonly p: PlaneApiParts) {
    this.defaults = { maxAttempts: p.config.maxAttempts, jobTimeoutMs: p.config.defaultJobTimeoutMs, maxFrameBytes: p.config.maxFrameBytes };
    const pipelines = pipelineApi(p);
    this.submitJobs = pipelines.submitJobs;
    this.listJobs = pipelines.listJobs;
    this.jobAttempts = pipelines.jobAttempts;
    this.retryJob = pipelines.retryJob;
    p.metrics.readFrom({
      connections: () => p.intake.connectionsByTransport(),
      nodes: () => Object.entries(nodeCounts(p.registry)),
      queueDepth: () => p.scheduler.queueDepth(),
      jobs: async () => Object.entries(await p.store.counts()),
    });
  }

  async submitJob(job: NewJob): Promise<JobRecord> {
    // The job's trace starts here (under the request's span): the store keeps its context.
    const traced = submitSpans([job]);
    const records: JobRecord[] = [];
    try {
      records.push(await this.p.store.submit(traced.jobs[0]!, this.p.owner));
    } finally {
      traced.done(records);
    }
    const record = records[0]!;
    this.p.logger.info({ job_id: record.job_id, priority: record.priority }, 'job submitted');
    this.p.scheduler.enqueue(record);
    this.p.bus.publish({ kind: 'job', job_id: record.job_id, state: record.state, attempt: record.attempt });
    this.p.wakeScheduler();
    return record;
  }

  getJob(jobId: string): Promise<JobRecord | undefined> {
    return this.p.store.get(jobId);
  }

  waitingFor(job: JobRecord): WaitingFor | undefined {
    return this.p.scheduler.waitingFor(job);
  }

  async jobLogs(jobId: string, afterCursor?: number): Promise<LogRecord[] | undefined> {
    return (await this.p.store.get(jobId)) === undefined ? undefined : this.p.store.logs(jobId, afterCursor);
  }

  async cancelJob(jobId: string): Promise<JobRecord | undefined> {
    const record = await this.p.coordinator.cancel(jobId);
    // Stored either way; a node of another replica hears it through that replica.
    if (record !== undefined && this.p.peers !== undefined) await this.p.peers.cancelElsewhere(record).catch((err: unknown) => {
      this.p.logger.warn({ err, job_id: jobId }, 'cancel stored, but the replica that holds the job did not take it now; the node is told when it resumes');
    });
    return record;
  }

  clusterNodes(): Promise<NodeView[]> {
    return this.p.peers === undefined ? Promise.resolve(this.listNodes()) : this.p.peers.nodes();
  }

  findNode(nodeId: string): Promise<NodeDetail | undefined> {
    return this.p.peers === undefined ? Promise.resolve(this.getNode(nodeId)) : this.p.peers.node(nodeId);
  }

  listNodes(): NodeView[] {
    return this.p.registry.views((nodeId) => this.p.coordinator.runningJobIds(nodeId)).map((view) => this.withBench(view));
  }

  getNode(nodeId: string): NodeDetail | undefined {
    const detail = this.p.registry.view(nodeId, (id) => this.p.coordinator.runningJobIds(id));
    return detail === undefined ? undefined : this.withBench(detail);
  }

  unbenchNode(nodeId: string): boolean {
    return this.p.breaker.lift(nodeId);
  }

  /** The view with the node's bench, when it has one (the breaker keeps benched nodes only). */
  private withBench<V extends NodeView>(view: V): V {
    const bench = this.p.breaker.benched(view.node_id);
    return bench === undefined ? view : { ...view, benched_until: new Date(bench.until).toISOString(), benched_reason: bench.reason };
  }

  async undrainNode(nodeId: string): Promise<UndrainOutcome> {
    const session = this.p.registry.get(nodeId);
    return session === undefined ? this.undrainElsewhere(nodeId) : undrainSession(session);
  }

  async drainNode(nodeId: string): Promise<boolean> {
    const session = this.p.registry.get(nodeId);
    if (session !== undefined) {
      session.actor.send({ type: 'drain' });
      return true;
    }
    return this.p.peers !== undefined && (await this.p.peers.forNode({ kind: 'drain', node_id: nodeId })) === 'done';
  }

  /** A node of another replica: its owner checks and answers as this plane would. */
  private async undrainElsewhere(nodeId: string): Promise<UndrainOutcome> {
    if (this.p.peers === undefined) return 'not_connected';
    const outcome = await this.p.peers.forNode({ kind: 'undrain', node_id: nodeId });
    if (outcome === 'done') return 'requested';
    if (outcome === 'no_owner') return 'not_connected';
    // The owner refuses with undrainSession's outcome as the reason.
    return outcome.refused === 'not_supported' ? 'not_supported' : 'not_draining';
  }

  cluster(): ClusterView {
    if (this.p.peers !== undefined) return this.p.peers.view();
    const self = { control_plane_id: this.p.controlPlaneId, nodes: this.p.registry.size, started_at: this.startedAt, last_renewal: null, version: this.version, cluster_format: null };
    return { mode: 'embedded', replicas: [self], nats: null };
  }

  async stats(): Promise<Record<string, number>> {
    const { wire } = this.p.metrics;
    return {
      active_connections: this.p.intake.connections,
      total_messages_sent: wire.messagesSent,
      total_messages_received: wire.framesIn,
      nodes: this.p.registry.size,
      ...prefixed('nodes_', nodeCounts(this.p.registry)),
      ...prefixed('queued_', Object.fromEntries([...this.p.scheduler.queueDepth()].map(([p, n]) => [p.toLowerCase(), n]))),
      ...prefixed('jobs_', await this.p.store.counts()),
    };
  }

  metrics(): Promise<string> {
    return this.p.metrics.render();
  }

  isReady(): boolean {
    return this.p.intake.accepting && this.p.store.failure() === undefined && this.p.notReady?.() === undefined;
  }

  storeFailure(): string | undefined {
    return this.p.store.failure() ?? this.p.notReady?.();
  }

  // The live feed of `GET /v1/events` (fleet-events.ts): every bus event, one node's list view, the queue.
  watchFleet(handler: (event: BusEvent) => void): () => void {
    return this.p.bus.subscribe(handler);
  }

  nodeView(nodeId: string): NodeView | undefined {
    const session = this.p.registry.get(nodeId);
    if (session !== undefined) return viewOf(nodeId, session, this.p.registry.owner, this.p.coordinator.runningJobIds(nodeId));
    return this.p.remoteViews?.get(nodeId) ?? this.p.registry.view(nodeId, () => []);
  }

  /** The live feed's nodes: this replica's, and in a cluster the others' as last heard. */
  fleetNodes(): NodeView[] {
    return this.p.remoteViews === undefined ? this.listNodes() : onePerNode([...this.listNodes(), ...this.p.remoteViews.list()]);
  }

  /** From the scheduler's queue index, which counts as it goes: no read of the store (a backlog of 20,000 jobs made that most of the plane's time). */
  async queueCounts(): Promise<Record<Priority, number>> {
    const counts: Record<Priority, number> = { Critical: 0, High: 0, Normal: 0, Low: 0 };
    for (const [priority, n] of this.p.scheduler.queueDepth()) counts[priority] = n;
    return counts;
  }

  watchJob(jobId: string, wake: () => void): () => void {
    return this.p.bus.subscribe((event) => {
      if (event.kind !== 'node' && event.job_id === jobId) wake();
    });
  }
}

function nodeCounts(registry: NodeRegistry): Record<NodeState, number> {
  const counts: Record<NodeState, number> = { registering: 0, ready: 0, busy: 0, draining: 0, dead: 0 };
  for (const session of registry.sessionsList()) counts[session.state]++;
  counts.dead += registry.deadCount;
  return counts;
}

function prefixed(prefix: string, counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).map(([k, v]) => [`${prefix}${k}`, v]));
}
