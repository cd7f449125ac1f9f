// The cluster's job store: jobs in a NATS JetStream KV bucket, log chunks in a stream, behind the
// same JobStore seam and contract suite as SQLite (test/supervisor/store/job-store-contract.ts).
//
// - Records: one KV value per job (`muster-jobs`, key = job id; job-doc.ts) with its attempts and
//   its results by attempt. Every transition reads the entry, asks the job machine (job-moves.ts)
//   and writes with `update(key, value, revision)`, a compare-and-set on the entry's revision: of
//   two writers racing for one job exactly one wins; the loser reads again and asks the machine
//   again, so it gets the answer it would have had after the winner. A write resolves once
//   JetStream acknowledged it (file storage). nats-server 2.9 acknowledges once the write is in
//   its files, and fsyncs them only every two minutes (2.9 has no `sync_interval: always`): an
//   acknowledged write survives a kill -9 of nats-server, not a power loss of an R1 server.
// - `seq`: the revision of the job's create, which rises across keys and replicas (the bucket's
//   stream sequence); copied into the value by its first update (job-doc.ts).
// - Fencing: owner-fence.ts, checked on the doc that the compare-and-set then writes over, so a
//   refused writer changes nothing and a takeover is one more compare-and-set.
// - Queries: `queued`, `active`, `counts` and `listJobs` are answered from an in-memory index
//   (job-index.ts) fed by this store's acknowledged writes and by a KV watch of the bucket (every
//   replica's writes), re-created after each reconnect (and when a timer finds it stalled) from the
//   last revision the watch delivered. Chosen over
//   secondary keys because those would need a second compare-and-set per transition (no
//   multi-key transaction in 2.9) and could disagree with the record after a crash between the
//   two; the index only lags, and every write still checks the record itself. `listJobs` reads
//   the page's records back (ended jobs are kept in the index as a summary only).
// - `submitMany`, all or none (job-batches.ts): the batch is first committed by one message on a
//   stream (MUSTER_JOB_BATCHES; parts and then a commit when it exceeds max_payload), then each
//   job is created in the bucket and the messages are deleted. A replica that dies in between
//   leaves them: any store finishes a committed batch older than `batchRecoveryMs` (at open and on
//   a timer; a create of an existing key changes nothing). So once any job of a batch is stored,
//   all will be; without the commit's acknowledgement none was created. Readers may see a batch's
//   first jobs some milliseconds before its last.
// - Logs: jetstream-job-logs.ts (`Nats-Msg-Id` de-duplication and a compare-and-set per subject).
//   A chunk goes to another stream than its job's record, and its append may first read its
//   subject's tail: a result asked for right after it would be written first, and a reader on
//   any replica (`job submit --wait`, a log follow) would see the job ended before its last
//   output. So a result waits for the appends of its job already in flight, as the SQLite
//   store's one queue of writes orders them.
// - Secrets: sealed with the SecretBox given (a key every replica shares), as the SQLite store does.
import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import type { JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator, Status } from '@nats-io/nats-core';
import { MusterError } from '../../protocol/errors.js';
import type { JobMetrics, JobOutcome, LogStream, ResultStatus } from '../../protocol/messages.js';
import type {
  AppendLogOutcome,
  AttemptRecord,
  JobListFilter,
  JobRecord,
  JobState,
  JobStore,
  LogRecord,
  NewJob,
  OwnerToken,
  StoreResultOutcome,
} from '../store/job-store.js';
import { NO_OWNER, fenceOf } from '../store/owner-fence.js';
import type { SecretBox } from '../store/secret-box.js';
import type { BusEvent } from '../bus/bus.js';
import { decodeDoc, docToRecord, encodeDoc, newDoc, type JobDoc } from './job-doc.js';
import { JobIndex, matches } from './job-index.js';
import { acceptMove, assignMove, cancelMove, finishMove, resultMove, retryMove, takeOver, withdrawMove } from './job-moves.js';
import { isStreamNotFound, isWrongLast } from './jetstream-errors.js';
import { JetStreamJobLogs } from './jetstream-job-logs.js';
import { processing } from './nats-trace.js';
import { JobBatches, type BatchJob } from './job-batches.js';
import { JetStreamAcks } from './jetstream-acks.js';
import { toClusterError } from './nats-unavailable.js';
import type { KvWatchEntry } from '@nats-io/kv';

export interface JetStreamJobStoreOptions {
  nc: NatsConnection;
  /** Seals `execution_context.secrets`; every replica must be given the same key. */
  box: SecretBox;
  /** KV bucket of job records; default `muster-jobs`. */
  bucket?: string;
  /** Stream and subject prefix of log chunks; default `MUSTER_LOGS`, `muster.logs`. */
  logStream?: string;
  logSubject?: string;
  /** Stream and subject of `submitMany` batches; default `MUSTER_JOB_BATCHES`, `muster.jobs.batch`. */
  batchStream?: string;
  batchSubject?: string;
  /** Replicas of the bucket and streams; default 1 (R3 needs nats-server 2.9.21 or later). */
  replicas?: number;
  /**
   * Revisions of each job the bucket keeps when this store creates it (KV history, 1 to 64; an
   * existing bucket keeps its own); default 1. Above 1, the fencing of every write can be
   * audited from the bucket (each revision names the token it was written with, job-doc.ts), at
   * the cost of that many times the bucket's size on disk.
   */
  history?: number;
  /** JetStream request timeout; default 2000 ms. */
  timeoutMs?: number;
  /** The log stream's `Nats-Msg-Id` window; default 2 minutes. */
  duplicateWindowMs?: number;
  /**
   * How old an unfinished batch must be before any store finishes it, and how often to look;
   * default 10 s. The same on every replica; 0 (tests) finishes or drops every unfinished batch
   * at open and never looks again, as if no writer were running.
   */
  batchRecoveryMs?: number;
}

const DEFAULTS = {
  bucket: 'muster-jobs',
  logStream: 'MUSTER_LOGS',
  logSubject: 'muster.logs',
  batchStream: 'MUSTER_JOB_BATCHES',
  batchSubject: 'muster.jobs.batch',
  replicas: 1,
  history: 1,
  timeoutMs: 2_000,
  duplicateWindowMs: 120_000,
  batchRecoveryMs: 10_000,
};

type Settings = Omit<Required<JetStreamJobStoreOptions>, 'nc' | 'box'>;

/** How often the watch is checked for following the bucket, and retried when it could not be made. */
const WATCH_CHECK_MS = 5_000;
const RETRY_WATCH_MS = 1_000;

/** How many lost compare-and-sets in a row a write tolerates before it gives up (a livelock guard). */
const MAX_RACES = 50;

const now = (): string => new Date().toISOString();

/** A write's decision from the doc it read: what to write (if anything) and what to answer. */
interface Decision<T> {
  write?: JobDoc;
  answer: T;
}


/** A key with writes of this store in flight (#ownWrite): the watch entries held back, and when they are done. */
interface WriteSlot {
  count: number;
  held: KvWatchEntry[];
  settled: Promise<void>;
  settle: () => void;
}

/** A move waiting for its job's next write (#transition). */
interface PendingMove {
  attempt: number | undefined;
  owner: OwnerToken;
  decide: (doc: JobDoc | undefined) => Decision<unknown>;
  fenceOnly: boolean;
  /** When a no-change answer decided on any stored revision (the index's guess too) is final. */
  final: ((doc: JobDoc) => boolean) | undefined;
  resolve: (answer: unknown) => void;
  reject: (err: unknown) => void;
  settled?: boolean;
}

/** A job's moves not yet written, and whether a write of them is under way. */
interface MoveGroup {
  ops: PendingMove[];
  running: boolean;
}

/** A job's change as the bus tells it. */
export type JobChange = Extract<BusEvent, { kind: 'job' }>;

/** Creates of one batch in flight at once (#materialise). */
const MATERIALISE_WINDOW = 128;

export class JetStreamJobStore implements JobStore {
  readonly #index = new JobIndex();
  readonly #changeHandlers = new Set<(change: JobChange) => void>();
  /** Keys with a write of this store in flight, and the watch entries held back meanwhile (#ownWrite). */
  readonly #writing = new Map<string, WriteSlot>();
  /** Moves of each job waiting for its next write (#transition). */
  readonly #groups = new Map<string, MoveGroup>();
  /** Jobs whose first waiting move came this event-loop turn: written at its end. */
  readonly #dueKeys = new Set<string>();
  #dueScheduled = false;
  #failure: string | undefined;
  #watcher: QueuedIterator<KvWatchEntry> | undefined;
  /** The last revision the watch delivered: where it resumes. */
  #watchRevision = 0;
  /** `#watchRevision` at the last `#checkWatch`. */
  #lastChecked = -1;
  #rewatching = false;
  #statuses: AsyncIterable<Status> | undefined;
  #closed = false;
  #recoveryTimer: NodeJS.Timeout | undefined;
  /** Log appends in flight, by job: a result of the job is written after them (storeResult). */
  readonly #appending = new Map<string, Set<Promise<unknown>>>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
    private readonly logsStream: JetStreamJobLogs,
    private readonly batches: JobBatches,
    /** The KV writes of jobs (creates and compare-and-sets): jetstream-acks.ts. */
    private readonly acks: JetStreamAcks,
    private readonly box: SecretBox,
    private readonly s: Settings,
  ) {}

  /** Creates (or binds) the bucket and streams, loads the index, and resumes unfinished batches. */
  static async open(options: JetStreamJobStoreOptions): Promise<JetStreamJobStore> {
    const s: Settings = { ...DEFAULTS, ...dropUndefined(options) };
    // JetStream's own limit for a KV bucket's history.
    if (!Number.isInteger(s.history) || s.history < 1 || s.history > 64) {
      throw new MusterError('internal', `job bucket history must be an integer from 1 to 64, got ${s.history}`);
    }
    const js = jetstream(options.nc, { timeout: s.timeoutMs });
    const jsm = await jetstreamManager(options.nc, { timeout: s.timeoutMs });
    const kv = await new Kvm(js).create(s.bucket, { history: s.history, replicas: s.replicas, storage: StorageType.File, timeout: s.timeoutMs });
    const logs = new JetStreamJobLogs(js, jsm, {
      stream: s.logStream,
      subject: s.logSubject,
      replicas: s.replicas,
      duplicateWindowMs: s.duplicateWindowMs,
    });
    await logs.ensureStream();
    await ensureStream(jsm, { name: s.batchStream, subjects: [s.batchSubject], storage: StorageType.File, num_replicas: s.replicas });
    const batches = new JobBatches(js, jsm, {
      stream: s.batchStream,
      subject: s.batchSubject,
      recoveryMs: s.batchRecoveryMs,
      maxPayload: options.nc.info?.max_payload ?? 1024 * 1024,
    });
    const store = new JetStreamJobStore(options.nc, jsm, kv, logs, batches, new JetStreamAcks(options.nc, s.timeoutMs), options.box, s);
    await store.#watch();
    store.#followReconnects();
    await store.#recoverBatches();
    store.#recoveryTimer = setInterval(() => {
      void store.#checkWatch().catch(() => undefined);
      if (s.batchRecoveryMs > 0) void store.#recoverBatches().catch(() => undefined);
    }, s.batchRecoveryMs > 0 ? Math.min(s.batchRecoveryMs, WATCH_CHECK_MS) : WATCH_CHECK_MS);
    store.#recoveryTimer.unref();
    return store;
  }

  failure(): string | undefined {
    return this.#failure;
  }

  /**
   * Calls `handler` for each change of a job's state or attempt that another writer made, as this
   * store learns of it (its watch, or a read): the bus event that writer's plane announced to its
   * own subscribers, so that the cluster's bus need not carry job events (replica-bus.ts). Not
   * called for this store's own writes, nor for revisions that changed neither.
   */
  onForeignChange(handler: (change: JobChange) => void): () => void {
    this.#changeHandlers.add(handler);
    return () => this.#changeHandlers.delete(handler);
  }

  peek(jobId: string): JobRecord | undefined {
    const cached = this.#index.recent(jobId);
    return cached === undefined ? undefined : docToRecord(cached.doc, cached.revision);
  }

  // ---- submit ----

  // Not fenced: a queued job has no attempt on a node yet.
  submit(job: NewJob, _owner: OwnerToken): Promise<JobRecord> {
    return this.#guard(async () => {
      const id = randomUUID();
      const doc = newDoc(id, job, now(), this.box, NO_OWNER);
      const revision = await this.#ownWrite(id, doc, () => this.#put(id, doc, 0));
      return docToRecord(doc, revision);
    });
  }

  submitMany(jobs: readonly NewJob[], _owner: OwnerToken): Promise<JobRecord[]> {
    return this.#guard(async () => {
      if (jobs.length === 0) return [];
      const at = now();
      const batch = jobs.map((job): BatchJob => {
        const id = randomUUID();
        return { id, doc: newDoc(id, job, at, this.box, NO_OWNER) };
      });
      // The commit point (job-batches.ts): once it is acknowledged, every job of the batch will be stored.
      const messages = await this.batches.commit(batch, (write) => this.#written(write));
      const revisions = await this.#materialise(batch);
      await this.batches.discard(messages);
      return batch.map(({ doc }, i) => docToRecord(doc, revisions[i]!));
    });
  }

  /**
   * Creates the batch's jobs, in order (one connection: revisions follow), skipping any already
   * there, at most MATERIALISE_WINDOW at a time: each create's timeout runs from its send, so with
   * all of a 2,000-job batch in flight at once the last ones waited behind every other and timed
   * out on a loaded server.
   */
  async #materialise(batch: readonly BatchJob[]): Promise<number[]> {
    const revisions = new Array<number>(batch.length);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < batch.length) {
        const i = next++;
        revisions[i] = await this.#materialiseOne(batch[i]!);
      }
    };
    await Promise.all(Array.from({ length: Math.min(MATERIALISE_WINDOW, batch.length) }, lane));
    return revisions;
  }

  async #materialiseOne({ id, doc }: BatchJob): Promise<number> {
    try {
      return await this.#ownWrite(id, doc, () => this.#put(id, doc, 0));
    } catch (err) {
      if (!isWrongLast(err)) throw err;
      // Another store finished this batch first: the job is there, at its own revision.
      const read = await this.#read(id);
      if (read === undefined) throw err;
      return read.doc.seq ?? read.revision;
    }
  }

  async #recoverBatches(): Promise<void> {
    if (!this.#closed) await this.batches.recover((batch) => this.#materialise(batch));
  }

  // ---- reads ----

  get(jobId: string): Promise<JobRecord | undefined> {
    return this.#guard(async () => {
      const read = await this.#read(jobId);
      return read === undefined ? undefined : docToRecord(read.doc, read.revision);
    });
  }

  secrets(jobId: string): Promise<Record<string, string> | undefined> {
    return this.#guard(async () => {
      const read = await this.#read(jobId);
      if (read === undefined) return undefined;
      const sealed = read.doc.sealed_secrets;
      return sealed === undefined ? {} : (JSON.parse(this.box.open(sealed, jobId)) as Record<string, string>);
    });
  }

  queued(limit?: number): Promise<JobRecord[]> {
    return this.#guard(() => Promise.resolve(this.#index.queued(limit)));
  }

  active(): Promise<JobRecord[]> {
    return this.#guard(() => Promise.resolve(this.#index.active()));
  }

  counts(): Promise<Record<JobState, number>> {
    return this.#guard(() => Promise.resolve(this.#index.counts()));
  }

  attempts(jobId: string): Promise<AttemptRecord[]> {
    return this.#guard(async () => (await this.#read(jobId))?.doc.attempts ?? []);
  }

  listJobs(filter: JobListFilter, limit: number): Promise<JobRecord[]> {
    return this.#guard(async () => {
      const out: JobRecord[] = [];
      const ids = this.#index.newestFirst(filter);
      // Read in pages of `limit`; a record whose index entry was behind and no longer matches is left out.
      while (out.length < limit) {
        const page: string[] = [];
        for (let next = ids.next(); !next.done && page.length < limit - out.length; next = ids.next()) page.push(next.value);
        if (page.length === 0) break;
        const records = await Promise.all(page.map((id) => this.get(id)));
        for (const record of records) if (record !== undefined && matches(record, filter)) out.push(record);
      }
      return out;
    });
  }

  logs(jobId: string, afterCursor?: number): Promise<LogRecord[]> {
    return this.#guard(() => this.logsStream.read(jobId, afterCursor));
  }

  // ---- transitions ----

  assign(jobId: string, attempt: number, nodeId: string, owner: OwnerToken): Promise<boolean> {
    // Not fenced: a new attempt takes its writer's token (owner-fence.ts).
    return this.#transition(
      jobId,
      undefined,
      owner,
      (doc) => {
        const write = doc === undefined ? undefined : assignMove(doc, attempt, nodeId, owner, now());
        return write === undefined ? { answer: false } : { write, answer: true };
      },
      false,
      // A job never returns to Queued at an attempt it left (a withdrawal or retry is the next
      // attempt): any stored revision past it answers `false` for good, with no read. This is
      // what a replica that lost the race for a queued job to another replica's assign sees.
      (doc) => doc.record.attempt > attempt || (doc.record.attempt === attempt && doc.record.state !== 'Queued'),
    );
  }

  takeOver(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean> {
    // The fence's write alone (as appendLog's): written only when the token rises.
    return this.#transition(
      jobId,
      attempt,
      owner,
      (doc) => ({ answer: doc !== undefined && doc.record.attempt === attempt && (doc.record.state === 'Assigned' || doc.record.state === 'Running') }),
      true,
    );
  }

  markRunning(jobId: string, attempt: number, owner: OwnerToken): Promise<boolean> {
    return this.#transition(jobId, attempt, owner, (doc) => {
      const write = doc === undefined ? undefined : acceptMove(doc, attempt, now());
      return write === undefined ? { answer: false } : { write, answer: true };
    });
  }

  requeue(jobId: string, attempt: number, reason: string, owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#transition(jobId, attempt, owner, (doc): Decision<JobRecord | undefined> => {
      const write = doc === undefined ? undefined : withdrawMove(doc, attempt, reason, now());
      return write === undefined ? { answer: undefined } : { write, answer: recordOf(write) };
    });
  }

  async storeResult(jobId: string, attempt: number, result: JobOutcome, metrics: JobMetrics, owner: OwnerToken): Promise<StoreResultOutcome> {
    await this.#appendsSettled(jobId);
    return this.#transition(jobId, attempt, owner, (doc): Decision<StoreResultOutcome> => {
      if (doc === undefined) return { answer: 'stale' };
      if (doc.results[String(attempt)] !== undefined) return { answer: 'duplicate' };
      const write = resultMove(doc, attempt, result, metrics, now());
      return write === undefined ? { answer: 'stale' } : { write, answer: 'stored' };
    });
  }

  finish(
    jobId: string,
    attempt: number,
    state: Extract<ResultStatus, 'Cancelled' | 'TimedOut'>,
    reason: string,
    owner: OwnerToken,
  ): Promise<boolean> {
    // Ending a queued job on its deadline moves no node's attempt: fenceOf lets any writer.
    return this.#transition(jobId, attempt, owner, (doc) => {
      const write = doc === undefined ? undefined : finishMove(doc, attempt, state, reason, now());
      return write === undefined ? { answer: false } : { write, answer: true };
    });
  }

  requestCancel(jobId: string, owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#transition(jobId, undefined, owner, (doc): Decision<JobRecord | undefined> => {
      if (doc === undefined) return { answer: undefined };
      const write = cancelMove(doc);
      return write === undefined ? { answer: recordOf(doc) } : { write, answer: recordOf(write) };
    });
  }

  retry(jobId: string, attempt: number, owner: OwnerToken): Promise<JobRecord | undefined> {
    return this.#transition(jobId, undefined, owner, (doc): Decision<JobRecord | undefined> => {
      const write = doc === undefined ? undefined : retryMove(doc, attempt);
      return write === undefined ? { answer: undefined } : { write, answer: recordOf(write) };
    });
  }

  appendLog(jobId: string, attempt: number, stream: LogStream, seq: number, data: string, owner: OwnerToken): Promise<AppendLogOutcome> {
    const append = this.#guard(async () => {
      // The fence first (a takeover is written before the chunk); the chunk then goes to the log
      // stream. Not one atomic step: a chunk may land beside a takeover that raced it, never after
      // a refusal this store saw.
      await this.#transition(jobId, attempt, owner, () => ({ answer: undefined }), true);
      return this.#written(() => this.logsStream.append(jobId, attempt, stream, seq, data));
    });
    this.#inFlight(jobId, append);
    return append;
  }

  /** Notes an append of `jobId` until it settles. */
  #inFlight(jobId: string, append: Promise<unknown>): void {
    let appends = this.#appending.get(jobId);
    if (appends === undefined) this.#appending.set(jobId, (appends = new Set()));
    appends.add(append);
    const settled = (): void => {
      appends.delete(append);
      if (appends.size === 0 && this.#appending.get(jobId) === appends) this.#appending.delete(jobId);
    };
    append.then(settled, settled);
  }

  /** Once every append of `jobId` asked for so far has settled (stored or failed: its caller hears which). */
  async #appendsSettled(jobId: string): Promise<void> {
    const appends = this.#appending.get(jobId);
    if (appends !== undefined) await Promise.allSettled([...appends]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#recoveryTimer);
    this.#watcher?.stop();
    this.acks.close();
    (this.#statuses as { stop?: () => void } | undefined)?.stop?.();
  }

  // ---- the write path ----

  /**
   * One job write as a compare-and-set, grouped with the other writes of the same job issued in
   * the same event-loop turn (or while the job's last write was in flight): a node's JobResult
   * right behind its JobAccepted becomes one write, as the SQLite store's group commit makes it
   * one transaction. Each write's promise settles once the group's write is acknowledged.
   */
  #transition<T>(
    jobId: string,
    attempt: number | undefined,
    owner: OwnerToken,
    decide: (doc: JobDoc | undefined) => Decision<T>,
    fenceOnly = false,
    final?: (doc: JobDoc) => boolean,
  ): Promise<T> {
    return this.#guard(
      () =>
        new Promise<T>((resolve, reject) => {
          const op: PendingMove = { attempt, owner, decide, fenceOnly, final, resolve: resolve as (answer: unknown) => void, reject };
          let group = this.#groups.get(jobId);
          if (group === undefined) this.#groups.set(jobId, (group = { ops: [], running: false }));
          group.ops.push(op);
          if (!group.running && group.ops.length === 1) this.#due(jobId);
        }),
    );
  }

  /** Writes the due jobs' groups at the end of this event-loop turn. */
  #due(jobId: string): void {
    this.#dueKeys.add(jobId);
    if (this.#dueScheduled) return;
    this.#dueScheduled = true;
    setImmediate(() => {
      this.#dueScheduled = false;
      const keys = [...this.#dueKeys];
      this.#dueKeys.clear();
      for (const key of keys) void this.#runGroups(key);
    });
  }

  /** Writes `jobId`'s pending moves, group after group, until none is left. */
  async #runGroups(jobId: string): Promise<void> {
    const group = this.#groups.get(jobId);
    if (group === undefined || group.running) return;
    group.running = true;
    try {
      while (group.ops.length > 0) {
        const ops = group.ops;
        group.ops = [];
        try {
          if (this.#closed) throw new MusterError('internal', 'the job store is closed');
          await this.#writeGroup(jobId, ops);
        } catch (err) {
          for (const op of ops) if (!op.settled) op.reject(err);
        }
      }
    } finally {
      group.running = false;
      this.#groups.delete(jobId);
    }
  }

  /**
   * One write of a group of moves: reads the job (the index's doc first, the entry when the
   * guess is refused or unknown), applies each move in order (fencing it when it names an
   * attempt, asking its `decide`) and writes the result at the revision read. A lost
   * compare-and-set reads again and decides every move again. A refusal or a no-change answer
   * from the index's guess is checked again on a fresh read, so a lagging index never answers
   * (unless the move says that answer is final on any revision past it: `final`).
   * `fenceOnly`: the move is only the fence's (appendLog, takeOver).
   */
  async #writeGroup(jobId: string, ops: PendingMove[]): Promise<void> {
    // A create of the key in flight (a batch's): write after it, at the revision it made.
    for (let slot = this.#writing.get(jobId); slot !== undefined; slot = this.#writing.get(jobId)) await slot.settled;
    let guess = this.#index.cached(jobId);
    race: for (let race = 0; race < MAX_RACES; race++) {
      const read = guess ?? (await this.#read(jobId));
      const fresh = guess === undefined;
      guess = undefined;
      // Every doc a move sees carries its seq, so its answer can be the record as written.
      let doc: JobDoc | undefined = read === undefined ? undefined : { ...read.doc, seq: read.doc.seq ?? read.revision };
      const outcomes: Array<{ answer: unknown } | { error: MusterError }> = [];
      let changed = false;
      let writer: { attempt: number; owner: OwnerToken } | undefined;
      for (const op of ops) {
        const fence = doc === undefined || op.attempt === undefined ? 'pass' : fenceOf({ ...doc.record, owner: doc.owner }, op.attempt, op.owner);
        if (fence === 'refuse') {
          if (!fresh) continue race;
          outcomes.push({ error: new MusterError('internal', `job ${jobId} attempt ${op.attempt} is owned by a newer writer (owner token ${doc!.owner}, this write ${op.owner})`) });
          continue;
        }
        const taken = fence === 'take' && doc !== undefined ? takeOver(doc, op.owner) : doc;
        const decision = op.fenceOnly ? { answer: op.decide(taken).answer, write: fence === 'take' ? taken : undefined } : op.decide(taken);
        let write = decision.write;
        if (write !== undefined && fence === 'take') write = { ...write, owner: op.owner };
        if (write === undefined && fence === 'take') write = taken;
        if (write === undefined || read === undefined) {
          if (!fresh && !(doc !== undefined && op.final?.(doc) === true)) continue race;
          outcomes.push({ answer: decision.answer });
          continue;
        }
        doc = write;
        changed = true;
        // The value names the last fenced write in it (job-doc.ts `written`); an unfenced last move, none.
        writer = op.attempt === undefined ? undefined : { attempt: op.attempt, owner: op.owner };
        outcomes.push({ answer: decision.answer });
      }
      if (changed) {
        const write = withWriter(doc!, writer);
        try {
          await this.#ownWrite(jobId, write, () => this.#put(jobId, write, read!.revision));
        } catch (err) {
          if (!isWrongLast(toCause(err))) throw err;
          // Lost the race: the next round decides on the winner's revision, from the index when
          // the watch already brought it (it is applied as this write settles), else read.
          const known = this.#index.cached(jobId);
          if (known !== undefined && known.revision > read!.revision) guess = known;
          continue;
        }
      }
      ops.forEach((op, i) => {
        const outcome = outcomes[i]!;
        op.settled = true;
        if ('error' in outcome) op.reject(outcome.error);
        else op.resolve(outcome.answer);
      });
      return;
    }
    throw new MusterError('internal', `job ${jobId}: ${MAX_RACES} compare-and-sets lost in a row`);
  }

  /**
   * A KV write of the job's doc, a compare-and-set on `revision` (0: a create): what
   * `kv.create` / `kv.update` send, through jetstream-acks.ts. The bucket is this store's own
   * (no mirror, domain or key codec), so the key's subject is `$KV.<bucket>.<key>`.
   */
  #put(jobId: string, doc: JobDoc, revision: number): Promise<number> {
    return this.acks.publish(`$KV.${this.s.bucket}.${jobId}`, encodeDoc(doc), revision);
  }

  async #read(jobId: string): Promise<{ doc: JobDoc; revision: number } | undefined> {
    const entry = await this.kv.get(jobId);
    if (entry === null || entry.operation !== 'PUT') return undefined;
    const doc = decodeDoc(entry.value);
    this.#learned(jobId, doc, entry.revision);
    return { doc, revision: entry.revision };
  }

  /**
   * One of this store's writes of `jobId`, into the index once acknowledged. The watch may deliver
   * the new revision before the acknowledgement arrives: while a write of the key is in flight,
   * its watch entries wait, so that this store's own revision is never taken for another
   * writer's (and announced as such); entries of other writers wait with them and follow.
   */
  async #ownWrite(jobId: string, doc: JobDoc, write: () => Promise<number>): Promise<number> {
    let slot = this.#writing.get(jobId);
    if (slot === undefined) {
      let settle!: () => void;
      const settled = new Promise<void>((resolve) => (settle = resolve));
      this.#writing.set(jobId, (slot = { count: 0, held: [], settled, settle }));
    }
    slot.count++;
    try {
      const revision = await this.#written(write);
      this.#index.apply(jobId, doc, revision);
      return revision;
    } finally {
      if (--slot.count === 0) {
        this.#writing.delete(jobId);
        for (const e of slot.held) this.#watched(e);
        slot.settle();
      }
    }
  }

  /** A watch entry: another writer's revision unless the index has it already (this store's, or read). */
  #watched(e: KvWatchEntry): void {
    if (e.operation !== 'PUT' || this.#index.knows(e.key, e.revision)) return;
    // The hop of a job between replicas is this watch: its consumer span hangs under the
    // context the job carries (its submission's), so a trace crosses NATS here.
    const doc = decodeDoc(e.value);
    const subject = `$KV.${this.s.bucket}.${e.key}`;
    processing(`$KV.${this.s.bucket}`, subject, e.length, doc.record.traceparent, () => this.#learned(e.key, doc, e.revision));
  }

  /** Another writer's revision, read or watched: into the index, and announced when it moved the job. */
  #learned(jobId: string, doc: JobDoc, revision: number): void {
    if (!this.#index.apply(jobId, doc, revision) || this.#changeHandlers.size === 0) return;
    const r = doc.record;
    const change: JobChange = { kind: 'job', job_id: jobId, state: r.state, attempt: r.attempt };
    if (r.node_id !== undefined) change.node_id = r.node_id;
    for (const handler of this.#changeHandlers) handler(change);
  }

  /** A write to JetStream: a failure other than a lost compare-and-set is the store's failure until one succeeds. */
  async #written<T>(write: () => Promise<T>): Promise<T> {
    try {
      const out = await write();
      this.#failure = undefined;
      return out;
    } catch (err) {
      if (!isWrongLast(err)) this.#failure = `NATS JetStream write failed: ${(err as Error).message}`;
      throw err;
    }
  }

  // Every failure leaves as a rejected MusterError, never a synchronous throw across the async seam.
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new MusterError('internal', 'the job store is closed');
    try {
      return await fn();
    } catch (err) {
      // NATS away or slow is a passing failure (503 with Retry-After on the API): nats-unavailable.ts.
      throw toClusterError(err, 'use the job store');
    }
  }

  // ---- the index's feed ----

  /**
   * Watches the bucket from the last revision the watch delivered (not the index's: that also
   * rises with this store's own writes, and would skip another replica's write the watch missed);
   * resolves once the watch caught up with the bucket as it was, or rejects after `timeoutMs`.
   */
  async #watch(): Promise<void> {
    const target = (await this.jsm.streams.info(`KV_${this.s.bucket}`)).state.last_seq;
    const from = this.#watchRevision;
    const watcher = await this.kv.watch(from > 0 ? { resumeFromRevision: from + 1 } : {});
    this.#watcher?.stop();
    this.#watcher = watcher;
    let caughtUp!: () => void;
    const ready = new Promise<void>((resolve) => (caughtUp = resolve));
    if (from >= target) caughtUp();
    void (async () => {
      for await (const e of watcher) {
        if (e.revision > this.#watchRevision) this.#watchRevision = e.revision;
        const writing = this.#writing.get(e.key);
        if (writing !== undefined) writing.held.push(e);
        else this.#watched(e);
        if (e.revision >= target) caughtUp();
      }
    })().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MusterError('internal', `the watch of ${this.s.bucket} did not catch up in ${this.s.timeoutMs} ms`)), this.s.timeoutMs * 5);
    });
    try {
      await Promise.race([ready, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Makes the watch again (it is a hint: after a reconnect, or when it stopped following), retrying until it holds. */
  #rewatch(): void {
    if (this.#closed || this.#rewatching) return;
    this.#rewatching = true;
    this.#watch().then(
      () => {
        this.#rewatching = false;
      },
      () => {
        this.#rewatching = false;
        if (!this.#closed) setTimeout(() => this.#rewatch(), RETRY_WATCH_MS).unref();
      },
    );
  }

  #followReconnects(): void {
    this.#statuses = this.nc.status();
    void (async () => {
      for await (const status of this.#statuses!) {
        if (this.#closed) break;
        if (status.type === 'reconnect') this.#rewatch();
      }
    })().catch(() => undefined);
  }

  /**
   * The reconcile on a timer: a watch that delivered nothing while the bucket moved on since the
   * last check has stopped following (a consumer lost without a reconnect): make it again.
   */
  async #checkWatch(): Promise<void> {
    if (this.#closed) return;
    const last = (await this.jsm.streams.info(`KV_${this.s.bucket}`)).state.last_seq;
    const stalled = last > this.#watchRevision && this.#watchRevision === this.#lastChecked;
    this.#lastChecked = this.#watchRevision;
    if (stalled) this.#rewatch();
  }
}

/** The doc as written: naming the fenced write's attempt and token (job-doc.ts `written`), or nothing. */
function withWriter(doc: JobDoc, writer: { attempt: number; owner: OwnerToken } | undefined): JobDoc {
  const { written: _, ...rest } = doc;
  return writer === undefined ? rest : { ...rest, written: writer };
}

/** The record of a doc a move saw or made (its seq is set: #transition sees to it). */
const recordOf = (doc: JobDoc): JobRecord => docToRecord(doc, doc.seq ?? 0);

async function ensureStream(
  jsm: JetStreamManager,
  config: { name: string; subjects: string[]; storage: StorageType; num_replicas: number },
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
    await jsm.streams.add(config);
  }
}

/** The JetStream error under a MusterError (a write's error may come wrapped). */
function toCause(err: unknown): unknown {
  return err instanceof MusterError && err.cause !== undefined ? err.cause : err;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
