// The job lifecycle on the control plane (PROTOCOL.md section 4): assignment and its
// accept timeout, acceptance, logs, results (stored once, then acked), rejection,
// cancel, job timeout and deadline, and requeue when a node dies.
// It keeps in memory where each active attempt is placed, so that every decision about
// an attempt is made against the store's compare-and-set, never against a stale copy.
// Every move it makes is first asked of the job machine (actors/job-machine.ts): a move the
// machine forbids is never attempted.
// These placements are the one record of what each node holds: node actors read it.
import type { NodeBreaker } from './node-breaker.js';
import { OutputMasks } from './output-masks.js';
import type { Logger } from 'pino';
import { lifecycleOf, nextJobState, type JobEvent, type JobLifecycle } from '../../actors/job-machine.js';
import { NO_RESOURCES, reservedFor, type JobHoldings, type JobSlot, type Resources } from '../../actors/node-capacity.js';
import type { PlaneMetrics } from '../../observability/plane-metrics.js';
import { MusterError } from '../../protocol/errors.js';
import type { EnvelopeOf } from '../../protocol/messages.js';
import type { RetryOutcome } from '../admin/plane-api.js';
import type { Bus } from '../bus/bus.js';
import type { AuditSink } from '../security/audit-log.js';
import { peerIp } from '../security/peer-address.js';
import type { JobRecord, JobStore, OwnerToken } from '../store/job-store.js';
import type { NodeSession } from '../nodes/node-session.js';
import { inSpan, messageSpanOptions, tracingOn, withSpan } from '../../observability/spans.js';
import { assignmentSpan, jobMessageAttributes } from './job-trace.js';

interface Placement {
  jobId: string;
  attempt: number;
  nodeId: string;
  slot: JobSlot;
  /**
   * The job as the machine sees it while this attempt is placed (`Assigned` or `Running`).
   * Its `cancel_requested`, stored with the job, means the node is told at once, or when it resumes.
   */
  lifecycle: JobLifecycle;
  /** The job's own timeout and deadline, kept from its record so that acceptance needs no read of the store. */
  limits: RunLimits;
  acceptTimer?: NodeJS.Timeout;
  runTimer?: NodeJS.Timeout;
  /** When the node's session is gone (plane restarted): requeue unless a node resumes it. */
  orphanTimer?: NodeJS.Timeout;
  /** The plane's masking of this attempt's output; none when the job has no secrets. */
  masks?: OutputMasks | undefined;
  /** The context its `JobAssignment` carried: the parent of the node's answers that carry none. */
  traceparent?: string | undefined;
}

interface RunLimits {
  timeoutMs: number;
  /** Epoch ms; undefined: none. */
  deadlineMs?: number;
}

/** What a job event on the bus says: the record's id, state, attempt and node. */
type JobChange = Pick<JobRecord, 'job_id' | 'state' | 'attempt' | 'node_id'>;

export interface CoordinatorOptions {
  store: JobStore;
  /** The token of job writes that move no node's attempt (a cancel request, a retry: see `OwnerToken`). */
  owner: OwnerToken;
  /**
   * The fencing token of writes for a node's attempts: the token under which this plane owns the
   * node (the embedded plane's is one constant), or undefined when it does not own it, and then
   * it writes nothing for the node's attempts.
   */
  tokenOf(nodeId: string): OwnerToken | undefined;
  /**
   * Whether this plane may take a node's attempts back now (requeue them when the node is gone).
   * A cluster replica that was cut off from NATS may not until it has been back for a full lease
   * TTL: the nodes it lost meanwhile may run on elsewhere. Undefined: always.
   */
  mayWithdraw?(): boolean;
  bus: Bus;
  logger: Logger;
  acceptTimeoutMs: number;
  /** Extra time the plane gives a job past its own timeout before it steps in: the agent enforces it first. */
  timeoutGraceMs: number;
  /** How long a job without a session waits for its node to resume. */
  orphanGraceMs: number;
  /** The live session of a node, if any. */
  sessionOf(nodeId: string): NodeSession | undefined;
  /** Asks the scheduler for a pass (a node has room or a job is queued). */
  wakeScheduler(): void;
  /** Where job messages for attempts the sender never held are recorded; undefined: not audited. */
  audit?: AuditSink;
  /** Told of attempts that fail for a node's own reasons and of completed jobs; undefined: no breaker. */
  breaker?: Pick<NodeBreaker, 'failed' | 'succeeded'>;
  /** Counts dispatch latency and stored results. */
  metrics?: Pick<PlaneMetrics, 'dispatched' | 'jobResult'>;
}

/** More attempts than any node holds at once (its capacity bounds them). */
const TAKEOVER_LIMIT = 10_000;

type JobMessage = EnvelopeOf<'JobAccepted'> | EnvelopeOf<'JobRejected'> | EnvelopeOf<'LogChunk'> | EnvelopeOf<'JobResult'>;

/**
 * How the sender of a job message stands to the attempt it names:
 * - `current`: it holds the attempt now (its placement);
 * - `stale`: it held the attempt once, but the plane has taken it back or the job ended
 *   (PROTOCOL.md 4 rule 5: a result is acked and discarded, an acceptance cancelled);
 * - `foreign`: it never held it: refused with `invalid_message`, changes nothing, audited.
 */
type Standing = { kind: 'current'; placement: Placement } | { kind: 'stale' } | { kind: 'foreign' };

export class JobCoordinator implements JobHoldings {
  private readonly placements = new Map<string, Placement>();
  /** The same placements by node, so that a node's holdings cost no scan of every job. */
  private readonly byNode = new Map<string, Map<string, Placement>>();
  /** Assignments being written, by node (a node being given a job is not idle: rebalancer.ts). */
  private readonly assigning = new Map<string, number>();
  private closed = false;

  constructor(private readonly o: CoordinatorOptions) {}

  /**
   * After a restart: active jobs wait for their nodes to resume, else they are requeued (or
   * end `Cancelled` when a cancel was requested). A node that resumes a job whose cancel was
   * requested before the restart is sent `CancelJob` then (`adopt`).
   */
  async recover(): Promise<void> {
    for (const job of await this.o.store.active()) {
      if (job.node_id !== undefined) await this.placeAwaiting(job, job.node_id, 'node did not resume after restart');
    }
  }

  /**
   * This plane became the owner of a node that another replica owned (the node registered or
   * resumed here, or its replica died): the node's active attempts, read from the store, are
   * fenced with `token` first (no write of the old owner lands after that) and then placed here,
   * waiting for the node as after a restart. Returns how many it took.
   */
  async takeOver(nodeId: string, token: OwnerToken): Promise<number> {
    let taken = 0;
    for (const state of ['Assigned', 'Running'] as const) {
      for (const job of await this.o.store.listJobs({ node_id: nodeId, state }, TAKEOVER_LIMIT)) {
        if (this.current(job.job_id, job.attempt, nodeId) !== undefined) continue;
        if (!(await this.o.store.takeOver(job.job_id, job.attempt, token))) continue;
        // Read after the fence: a cancel requested before it is in this copy.
        const fenced = await this.o.store.get(job.job_id);
        if (fenced === undefined || fenced.attempt !== job.attempt || fenced.node_id !== nodeId) continue;
        await this.placeAwaiting(fenced, nodeId, 'node did not resume after its replica changed');
        taken += 1;
      }
    }
    return taken;
  }

  /**
   * The node is no longer this plane's (another replica took it, or this one lost its lease):
   * its placements are dropped without a write. Its new owner takes its attempts over.
   */
  forgetNode(nodeId: string): void {
    for (const placement of this.jobsOf(nodeId)) {
      clearTimers(placement);
      this.placements.delete(placement.jobId);
      this.unindex(placement);
    }
  }

  /**
   * A cancel stored by another replica's API, for an attempt placed here: the node is told
   * (now, or when it resumes). False when this plane does not hold that attempt.
   */
  cancelPlaced(jobId: string, attempt: number): boolean {
    const placement = this.placements.get(jobId);
    if (placement === undefined || placement.attempt !== attempt) return false;
    placement.lifecycle = nextJobState(placement.lifecycle, { type: 'cancel' }) ?? placement.lifecycle;
    this.sendCancel(placement, 'cancelled by operator');
    return true;
  }

  /** Places an active job for a node that has no session here yet: withdrawn unless the node resumes it in time. */
  private async placeAwaiting(job: JobRecord, nodeId: string, reason: string): Promise<void> {
    const placement = this.place(job, nodeId, lifecycleOf(job));
    placement.masks = OutputMasks.of(await this.o.store.secrets(job.job_id));
    this.awaitNode(placement, reason);
    if (job.state === 'Running') this.armRunTimer(placement, startedAt(job));
  }

  private awaitNode(placement: Placement, reason: string): void {
    clearTimeout(placement.orphanTimer);
    placement.orphanTimer = setTimeout(() => void this.withdraw(placement, reason), this.o.orphanGraceMs);
  }

  /** Jobs placed on a node now. */
  jobsOf(nodeId: string): Placement[] {
    return [...(this.byNode.get(nodeId)?.values() ?? [])];
  }

  /** Read by the node actor on every capacity decision and by the fleet feed on every report: no copies. */
  reservedOn(nodeId: string): Resources {
    const held = this.byNode.get(nodeId);
    if (held === undefined) return { ...NO_RESOURCES };
    const used = { ...NO_RESOURCES };
    for (const p of held.values()) {
      used.cpu_cores += p.slot.reserved.cpu_cores;
      used.memory_mb += p.slot.reserved.memory_mb;
      used.disk_gb += p.slot.reserved.disk_gb;
    }
    return used;
  }

  /** How many jobs are placed on a node now. */
  heldBy(nodeId: string): number {
    return this.byNode.get(nodeId)?.size ?? 0;
  }

  /** Whether a node holds a job or is being given one (its assignment is being written): not idle. */
  isOccupied(nodeId: string): boolean {
    return this.heldBy(nodeId) > 0 || this.assigning.has(nodeId);
  }

  runningJobIds(nodeId: string): string[] {
    return this.jobsOf(nodeId).map((p) => p.jobId);
  }

  /** Places a queued job on a node's session and sends the `JobAssignment`. False when it lost a race. */
  assign(job: JobRecord, session: NodeSession, nodeId: string): Promise<boolean> {
    return this.occupying(nodeId, () => this.assignNow(job, session, nodeId));
  }

  private async assignNow(job: JobRecord, session: NodeSession, nodeId: string): Promise<boolean> {
    const assigned = nextJobState(job, { type: 'assign' });
    if (assigned === undefined) return false;
    // The store keeps secret values sealed; opened only for this message, before anything changes.
    // The record names every secret the job has (values `***`): most have none, and need no read.
    const secrets = Object.keys(job.execution_context.secrets).length === 0 ? {} : ((await this.o.store.secrets(job.job_id)) ?? {});
    const token = this.o.tokenOf(nodeId);
    if (token === undefined || !(await this.o.store.assign(job.job_id, job.attempt, nodeId, token))) return false;
    const placement = this.place(job, nodeId, assigned);
    placement.masks = OutputMasks.of(secrets);
    session.actor.send({ type: 'job.assigned', jobId: job.job_id });
    const data: EnvelopeOf<'JobAssignment'>['data'] = {
      job_id: job.job_id,
      attempt: job.attempt,
      job: job.job,
      execution_context: { ...job.execution_context, secrets },
      priority: job.priority,
    };
    if (job.deadline !== undefined) data.deadline = job.deadline;
    const trace = assignmentSpan(job, nodeId);
    placement.traceparent = trace?.traceparent;
    // In the span of the send (when tracing): the bus event, the log line and the accept timeout belong to the job's trace.
    const announce = (): void => {
      session.send('JobAssignment', data, undefined, trace?.traceparent);
      if (job.attempt === 1) this.o.metrics?.dispatched(Date.now() - Date.parse(job.created_at));
      placement.acceptTimer = setTimeout(() => void this.acceptTimedOut(placement), this.o.acceptTimeoutMs);
      this.o.bus.publish({ kind: 'job', job_id: job.job_id, state: 'Assigned', attempt: job.attempt, node_id: nodeId });
      if (session.logs('info')) session.logger.info({ job_id: job.job_id, attempt: job.attempt, node_id: nodeId }, 'job assigned');
    };
    if (trace === undefined) announce();
    else {
      withSpan(trace.span, announce);
      trace.span.end();
    }
    return true;
  }

  /**
   * A node (re)registered: it keeps the jobs it still runs and that the plane holds for it;
   * jobs the plane holds for it that it does not list are withdrawn (PROTOCOL.md 4.6).
   */
  adopt(nodeId: string, keep: ReadonlySet<string>): Record<string, JobSlot> {
    const kept: Record<string, JobSlot> = {};
    for (const placement of this.jobsOf(nodeId)) {
      if (keep.has(placement.jobId)) {
        clearTimeout(placement.orphanTimer);
        placement.orphanTimer = undefined;
        kept[placement.jobId] = placement.slot;
        // Requested while the node was away (or before a restart): carried out now.
        if (placement.lifecycle.cancel_requested) this.sendCancel(placement, 'cancelled by operator');
      } else {
        this.o.breaker?.failed(nodeId, 'resumed without a job it held');
        void this.withdraw(placement, 'node resumed without it');
      }
    }
    return kept;
  }

  /**
   * A resumed node says it still runs jobs whose attempt the plane took back while it was
   * away (requeued elsewhere, or ended): each such attempt is cancelled on the node, so a
   * job runs on at most one node at a time (PROTOCOL.md 4.5).
   */
  async cancelStale(session: NodeSession, nodeId: string, running: readonly string[]): Promise<void> {
    for (const jobId of running) {
      if (this.placements.get(jobId)?.nodeId === nodeId) continue; // adopted: still this node's
      const attempts = (await this.o.store.attempts(jobId)).filter((a) => a.node_id === nodeId);
      const last = attempts[attempts.length - 1];
      if (last === undefined) continue;
      session.send('CancelJob', { job_id: jobId, attempt: last.attempt, reason: 'attempt is no longer current' });
      session.logger.info({ job_id: jobId, attempt: last.attempt, node_id: nodeId }, 'stale attempt cancelled on resume');
    }
  }

  /** Counts an assignment under way on the node while `write` runs. */
  private async occupying(nodeId: string, write: () => Promise<boolean>): Promise<boolean> {
    this.assigning.set(nodeId, (this.assigning.get(nodeId) ?? 0) + 1);
    try {
      return await write();
    } finally {
      const left = (this.assigning.get(nodeId) ?? 1) - 1;
      if (left === 0) this.assigning.delete(nodeId);
      else this.assigning.set(nodeId, left);
    }
  }

  /** A node is gone for good (dead or deregistered): its jobs go back to the queue. */
  nodeGone(nodeId: string, reason: string): void {
    for (const placement of this.jobsOf(nodeId)) void this.withdraw(placement, reason);
  }

  /** The fencing token of a write for a node's attempt; refuses when this plane does not own the node. */
  private tokenFor(nodeId: string): OwnerToken {
    const token = this.o.tokenOf(nodeId);
    if (token === undefined) throw new MusterError('shutting_down', `this control plane no longer owns node ${nodeId}`);
    return token;
  }

  /** A job message from a node, in a `process <type>` span under the context it carries. */
  handle(session: NodeSession, nodeId: string, message: JobMessage): Promise<void> {
    // The hot path (every log chunk): with tracing off, not even the span's options are made.
    if (!tracingOn()) return this.handleNow(session, nodeId, message);
    const parent = message.traceparent ?? this.placements.get(message.data.job_id)?.traceparent;
    const options = messageSpanOptions('process', message.type, jobMessageAttributes(message.data, nodeId, message.id));
    return inSpan(`process ${message.type}`, options, parent, () => this.handleNow(session, nodeId, message));
  }

  private async handleNow(session: NodeSession, nodeId: string, message: JobMessage): Promise<void> {
    // The one check every job message passes: does the sending node hold the attempt it names?
    // Its placement answers for the current attempt (the common case, without waiting on a
    // promise); the attempt history for an earlier one.
    const placement = this.current(message.data.job_id, message.data.attempt, nodeId);
    const standing: Standing =
      placement !== undefined ? { kind: 'current', placement } : await this.earlierStanding(nodeId, message.data.job_id, message.data.attempt);
    if (standing.kind === 'foreign') return this.refuseForeign(session, nodeId, message);
    switch (message.type) {
      case 'JobAccepted':
        return this.accepted(session, standing, message.data);
      case 'JobRejected':
        return this.rejected(standing, message.data);
      case 'LogChunk':
        return this.logChunk(session, nodeId, standing, message.data);
      case 'JobResult':
        return this.result(session, nodeId, standing, message.data, message.id);
    }
  }

  /** The standing of a job message for an attempt the node does not hold now: one it held once, or never. */
  private async earlierStanding(nodeId: string, jobId: string, attempt: number): Promise<Standing> {
    const attempts = await this.o.store.attempts(jobId);
    return attempts.some((a) => a.attempt === attempt && a.node_id === nodeId) ? { kind: 'stale' } : { kind: 'foreign' };
  }

  /**
   * Whether `nodeId` holds that attempt of the job now: the standing check for messages that
   * are not job messages but belong to an attempt (artifact uploads, PROTOCOL.md section 8).
   */
  holds(nodeId: string, jobId: string, attempt: number): boolean {
    return this.current(jobId, attempt, nodeId) !== undefined;
  }

  /** Cancels a job: at once when queued, else the node is told and its result ends the job. */
  async cancel(jobId: string): Promise<JobRecord | undefined> {
    const record = await this.o.store.requestCancel(jobId, this.o.owner);
    if (record === undefined) return undefined;
    const placement = this.placements.get(jobId);
    if (placement !== undefined) {
      // Stored first: a node away now, or a plane restarted before the node heard, still gets it on resume.
      placement.lifecycle = nextJobState(placement.lifecycle, { type: 'cancel' }) ?? placement.lifecycle;
      this.sendCancel(placement, 'cancelled by operator');
    } else if (record.state === 'Cancelled') {
      this.publish(record);
    }
    return record;
  }

  /**
   * `POST /v1/jobs/{id}/retry`: a job that ended (but not `Completed`) is queued again as its
   * next attempt, if the machine allows it from the job's stored state.
   */
  async retry(jobId: string): Promise<RetryOutcome> {
    const record = await this.o.store.get(jobId);
    if (record === undefined) return { status: 'not_found' };
    if (nextJobState(record, { type: 'retry' }) === undefined) return { status: 'refused', record };
    const again = await this.o.store.retry(jobId, record.attempt, this.o.owner);
    // Lost a race (another retry, say): the job as it is now.
    if (again === undefined) return { status: 'refused', record: (await this.o.store.get(jobId)) ?? record };
    this.o.logger.info({ job_id: jobId, attempt: again.attempt, was: record.state }, 'job retried');
    this.publish(again);
    this.o.wakeScheduler();
    return { status: 'retried', record: again };
  }

  close(): void {
    this.closed = true;
    for (const placement of this.placements.values()) clearTimers(placement);
    this.placements.clear();
    this.byNode.clear();
  }

  private place(job: JobRecord, nodeId: string, lifecycle: JobLifecycle): Placement {
    const placement: Placement = {
      jobId: job.job_id,
      attempt: job.attempt,
      nodeId,
      slot: { attempt: job.attempt, reserved: reservedFor(job.job.resource_requirements) },
      lifecycle,
      limits: runLimitsOf(job),
    };
    const previous = this.placements.get(job.job_id);
    if (previous !== undefined) {
      clearTimers(previous);
      this.unindex(previous);
    }
    this.index(placement);
    return placement;
  }

  private index(placement: Placement): void {
    this.placements.set(placement.jobId, placement);
    let held = this.byNode.get(placement.nodeId);
    if (held === undefined) this.byNode.set(placement.nodeId, (held = new Map()));
    held.set(placement.jobId, placement);
  }

  private current(jobId: string, attempt: number, nodeId: string): Placement | undefined {
    const placement = this.placements.get(jobId);
    return placement !== undefined && placement.attempt === attempt && placement.nodeId === nodeId ? placement : undefined;
  }

  /** A job message naming an attempt this node never held: it may not touch it. */
  private refuseForeign(session: NodeSession, nodeId: string, message: JobMessage): void {
    const { job_id: jobId, attempt } = message.data;
    const reason = `${message.type} for job ${jobId} attempt ${attempt}, which this node does not hold`;
    session.sendError(new MusterError('invalid_message', `data.job_id: ${reason}`, { field: 'data.job_id' }), message.id);
    // Throttled per node: a node that keeps forging leaves a line a minute, with a count.
    this.o.audit?.recordThrottled(`attempt_refused|${nodeId}`, {
      event: 'attempt_refused',
      address: peerIp(session.connection.remoteAddress),
      node_id: nodeId,
      correlation_id: session.connection.id,
      code: 'invalid_message',
      reason,
    });
  }

  private async accepted(session: NodeSession, standing: Standing, data: { job_id: string; attempt: number }): Promise<void> {
    const placement = standing.kind === 'current' ? standing.placement : undefined;
    const running = placement === undefined ? undefined : this.allowed(placement, { type: 'accept' });
    const refused = (why: string): void => {
      // A late acceptance: the attempt is no longer this node's to run (PROTOCOL.md 4.5).
      session.send('CancelJob', { ...data, reason: 'attempt is no longer current' });
      session.logger.warn({ ...data, why }, 'acceptance refused: the node is told to cancel the attempt');
    };
    if (placement === undefined) return refused(`the attempt is ${standing.kind}`);
    if (running === undefined) return refused(`the job is ${placement.lifecycle.state}`);
    if (!(await this.o.store.markRunning(data.job_id, data.attempt, this.tokenFor(placement.nodeId)))) return refused('the store refused the move to Running');
    placement.lifecycle = running;
    clearTimeout(placement.acceptTimer);
    placement.acceptTimer = undefined;
    // The store stamped started_at during markRunning, a moment ago: no read needed.
    this.armRunTimer(placement, Date.now());
    this.publish({ job_id: data.job_id, state: 'Running', attempt: data.attempt, node_id: placement.nodeId });
  }

  private async rejected(standing: Standing, data: { job_id: string; attempt: number; reason: string }): Promise<void> {
    if (standing.kind !== 'current') return;
    this.o.breaker?.failed(standing.placement.nodeId, `rejected: ${data.reason}`);
    await this.withdraw(standing.placement, `rejected: ${data.reason}`);
  }

  private async logChunk(session: NodeSession, nodeId: string, standing: Standing, data: EnvelopeOf<'LogChunk'>['data']): Promise<void> {
    const masks = standing.kind === 'current' ? standing.placement.masks : undefined;
    const text = masks === undefined ? data.data : masks.chunk(data.stream, data.seq, data.data);
    const outcome = await this.o.store.appendLog(data.job_id, data.attempt, data.stream, data.seq, text, this.tokenFor(nodeId));
    masks?.settled(data.stream, data.seq, outcome.status === 'stored');
    if (outcome.status === 'gap') {
      session.send('LogResync', { job_id: data.job_id, attempt: data.attempt, stream: data.stream, next_seq: outcome.nextSeq });
    } else if (outcome.status === 'stored') {
      this.o.bus.publish({ kind: 'log', job_id: data.job_id, attempt: data.attempt });
    }
  }

  private async result(
    session: NodeSession,
    nodeId: string,
    standing: Standing,
    data: EnvelopeOf<'JobResult'>['data'],
    replyTo: string | undefined,
  ): Promise<void> {
    // A held attempt whose machine takes no result is stale; the store still tells a repeat (`duplicate`).
    const ends = standing.kind === 'current' && this.allowed(standing.placement, { type: 'result', status: data.result.status }) !== undefined;
    const masks = standing.kind === 'current' ? standing.placement.masks : undefined;
    const token = this.tokenFor(nodeId);
    if (ends && masks !== undefined) await this.storeHeldOutput(data.job_id, data.attempt, masks, token);
    const result = masks === undefined ? data.result : { ...data.result, stdout: masks.text(data.result.stdout), stderr: masks.text(data.result.stderr) };
    const outcome = ends || standing.kind === 'stale' ? await this.o.store.storeResult(data.job_id, data.attempt, result, data.metrics, token) : 'stale';
    // Acknowledged only now that the result is stored (or was already, or is stale).
    session.send('JobResultAck', { job_id: data.job_id, attempt: data.attempt }, replyTo);
    // No child logger per result: the job's fields go on the line itself, and only when it is written.
    const logs = session.logs('info');
    if (outcome !== 'stored') {
      if (logs) session.logger.info({ job_id: data.job_id, attempt: data.attempt, outcome }, 'result acknowledged without change');
      return;
    }
    if (logs) session.logger.info({ job_id: data.job_id, attempt: data.attempt, status: data.result.status, exit_code: data.result.exit_code }, 'job finished');
    this.o.metrics?.jobResult(data.result.status, data.metrics.duration_ms);
    const placement = this.placements.get(data.job_id);
    if (placement !== undefined && placement.attempt === data.attempt) this.release(placement);
    if (standing.kind === 'current') {
      if (data.result.status === 'Completed') this.o.breaker?.succeeded(standing.placement.nodeId);
      // Stored as the result says, on the node that held the attempt: no read needed.
      this.publish({ job_id: data.job_id, state: data.result.status, attempt: data.attempt, node_id: standing.placement.nodeId });
      return;
    }
    const job = await this.o.store.get(data.job_id);
    if (job !== undefined) this.publish(job);
  }

  /** The output the masks held back, stored before the result that ends its attempt. */
  private async storeHeldOutput(jobId: string, attempt: number, masks: OutputMasks, token: OwnerToken): Promise<void> {
    for (const tail of masks.end()) {
      const outcome = await this.o.store.appendLog(jobId, attempt, tail.stream, tail.seq, tail.data, token);
      if (outcome.status === 'stored') this.o.bus.publish({ kind: 'log', job_id: jobId, attempt });
    }
  }

  private async acceptTimedOut(placement: Placement): Promise<void> {
    placement.acceptTimer = undefined;
    this.o.sessionOf(placement.nodeId)?.send('CancelJob', {
      job_id: placement.jobId,
      attempt: placement.attempt,
      reason: 'not accepted in time',
    });
    this.o.breaker?.failed(placement.nodeId, 'accept timeout');
    await this.withdraw(placement, 'accept timeout');
  }

  /** Job timeout and deadline: the plane's backstop for a node that does not enforce them. */
  private armRunTimer(placement: Placement, startedMs: number): void {
    const { timeoutMs, deadlineMs } = placement.limits;
    let until = startedMs + timeoutMs + this.o.timeoutGraceMs;
    if (deadlineMs !== undefined) until = Math.min(until, deadlineMs);
    clearTimeout(placement.runTimer);
    // setTimeout cannot wait longer than about 24.8 days; such a job is checked again then.
    const delay = Math.min(Math.max(0, until - Date.now()), 2_000_000_000);
    placement.runTimer = setTimeout(() => void this.timedOut(placement, until), delay);
  }

  private async timedOut(placement: Placement, until: number): Promise<void> {
    if (Date.now() < until) {
      const job = await this.o.store.get(placement.jobId);
      if (job !== undefined) this.armRunTimer(placement, startedAt(job));
      return;
    }
    if (this.placements.get(placement.jobId) !== placement) return;
    if (this.allowed(placement, { type: 'finish', state: 'TimedOut' }) === undefined) return;
    const token = this.o.tokenOf(placement.nodeId);
    if (token === undefined) {
      // Fenced for a while (or the node lost, and `forgetNode` ends this timer): look again later.
      placement.runTimer = setTimeout(() => void this.timedOut(placement, until), this.o.orphanGraceMs);
      return;
    }
    this.o.sessionOf(placement.nodeId)?.send('CancelJob', { job_id: placement.jobId, attempt: placement.attempt, reason: 'timed out' });
    if (await this.o.store.finish(placement.jobId, placement.attempt, 'TimedOut', 'timeout or deadline passed', token)) {
      this.release(placement);
      const job = await this.o.store.get(placement.jobId);
      if (job !== undefined) this.publish(job);
    }
  }

  /**
   * Takes an attempt back from its node: requeued, dead-lettered, or cancelled (store decides).
   * Never rejects: called from timers. When the store cannot take the write now (NATS away, or
   * this plane may not withdraw yet), the placement waits and it is tried again.
   */
  private async withdraw(placement: Placement, reason: string): Promise<void> {
    if (this.placements.get(placement.jobId) !== placement || this.closed) return;
    const expected = this.allowed(placement, { type: 'withdraw' });
    if (expected === undefined) return;
    // Not this plane's to write now (fenced for a while, or the node lost: then `forgetNode`
    // drops the placement, and this timer with it): asked again later.
    const token = this.o.tokenOf(placement.nodeId);
    if (token === undefined || this.o.mayWithdraw?.() === false) {
      this.awaitNode(placement, reason);
      return;
    }
    // Released first: from now on the attempt is not the node's (a late acceptance is cancelled).
    this.release(placement);
    let job: JobRecord | undefined;
    try {
      job = await this.o.store.requeue(placement.jobId, placement.attempt, reason, token);
    } catch (err) {
      if (this.closed || this.placements.has(placement.jobId)) return;
      this.o.logger.warn({ err, job_id: placement.jobId, attempt: placement.attempt }, 'could not withdraw an attempt; trying again');
      this.index(placement);
      this.awaitNode(placement, reason);
      return;
    }
    if (job === undefined) return;
    if (job.state !== expected.state || job.attempt !== expected.attempt) {
      // Until every store decides through the machine too: a disagreement is a bug to see.
      this.o.logger.error({ job_id: job.job_id, state: job.state, expected: expected.state }, 'store and job machine disagree on a requeue');
    }
    this.o.logger.info({ job_id: job.job_id, node_id: placement.nodeId, attempt: placement.attempt, state: job.state, reason }, 'job withdrawn');
    this.publish(job);
    this.o.wakeScheduler();
  }

  /** The job after `event` if the machine allows it from the placement's state; logged when it does not. */
  private allowed(placement: Placement, event: JobEvent): JobLifecycle | undefined {
    const next = nextJobState(placement.lifecycle, event);
    if (next === undefined) {
      this.o.logger.warn({ job_id: placement.jobId, attempt: placement.attempt, state: placement.lifecycle.state, event: event.type }, 'move refused by the job machine');
    }
    return next;
  }

  /** Tells the node that holds `placement` to stop it; nothing when the node has no open connection (it is told on resume). */
  private sendCancel(placement: Placement, reason: string): void {
    this.o.sessionOf(placement.nodeId)?.send('CancelJob', { job_id: placement.jobId, attempt: placement.attempt, reason });
  }

  /** Forgets the placement and frees the node's slot. */
  private release(placement: Placement): void {
    clearTimers(placement);
    if (this.placements.get(placement.jobId) === placement) {
      this.placements.delete(placement.jobId);
      this.unindex(placement);
    }
    this.o.sessionOf(placement.nodeId)?.actor.send({ type: 'job.ended', jobId: placement.jobId });
    this.o.wakeScheduler();
  }

  private unindex(placement: Placement): void {
    const held = this.byNode.get(placement.nodeId);
    if (held?.get(placement.jobId) !== placement) return;
    held.delete(placement.jobId);
    if (held.size === 0) this.byNode.delete(placement.nodeId);
  }

  private publish(job: JobChange): void {
    const event: { kind: 'job'; job_id: string; state: JobRecord['state']; attempt: number; node_id?: string } = {
      kind: 'job',
      job_id: job.job_id,
      state: job.state,
      attempt: job.attempt,
    };
    if (job.node_id !== undefined) event.node_id = job.node_id;
    this.o.bus.publish(event);
  }
}

function runLimitsOf(job: JobRecord): RunLimits {
  const limits: RunLimits = { timeoutMs: job.job.timeout.secs * 1000 + Math.floor(job.job.timeout.nanos / 1e6) };
  if (job.deadline !== undefined) limits.deadlineMs = Date.parse(job.deadline);
  return limits;
}

function startedAt(job: JobRecord): number {
  return job.started_at === undefined ? Date.now() : Date.parse(job.started_at);
}

function clearTimers(placement: Placement): void {
  clearTimeout(placement.acceptTimer);
  clearTimeout(placement.runTimer);
  clearTimeout(placement.orphanTimer);
}
