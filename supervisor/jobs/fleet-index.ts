// The scheduler's view of the fleet: every registered node, indexed by what it offers (runner
// types, job types, tags) and, for those with room, by how loaded they are. A node's change
// (registered, job assigned or ended, status) touches only that node's record: O(1) here,
// no scan of the fleet. Finding a node for a job scans the nodes with room least (or most)
// loaded first and stops at the first that fits, or, when the selector narrows the fleet far
// below the nodes with room, the nodes that offer its rarest term: O(nodes that match).
//
// `ops` counts node records read or written, the test hook for those cost claims.
import { fits, hasRoom, sumReserved, type Resources } from '../../actors/node-capacity.js';
import { selectorMatches, type NodeCapacity, type PlacementSelector } from './job-matcher.js';

/** `spread`: the least loaded matching node first; `binpack`: the most loaded that still fits. */
export type SchedulingPolicy = 'spread' | 'binpack';

interface NodeEntry {
  cap: NodeCapacity;
  /** Who reported it (a session): a stale reporter cannot remove its successor. */
  owner: unknown;
  /** Jobs the scheduler is placing on the node right now, not yet in `cap.used`; made when first needed. */
  pending: Map<string, Resources> | undefined;
  /** `cap.used` plus what is pending. */
  used: Resources;
  /** Jobs held plus pending: the order of the free list. */
  load: number;
  free: boolean;
}

export class FleetIndex {
  /** Node records read or written since the last reset: the cost test's counter. */
  ops = 0;
  /** Bumped when a node comes, goes, or changes what it offers: lets callers cache fleet-wide answers. */
  version = 0;
  private readonly entries = new Map<string, NodeEntry>();
  private readonly byRunnerType = new Map<string, Set<NodeEntry>>();
  private readonly byJobType = new Map<string, Set<NodeEntry>>();
  private readonly byTag = new Map<string, Set<NodeEntry>>();
  private readonly byFeature = new Map<string, Set<NodeEntry>>();
  /** Nodes with room, by load: `freeByLoad[n]` holds those with n jobs. */
  private readonly freeByLoad: Set<NodeEntry>[] = [];
  private freeCount = 0;

  constructor(private readonly policy: SchedulingPolicy = 'spread') {}

  get size(): number {
    return this.entries.size;
  }

  get(nodeId: string): NodeEntry | undefined {
    return this.entries.get(nodeId);
  }

  /**
   * Records what a node offers and holds now. Returns true when it has more room than
   * before (new, accepting again, or a job ended): the scheduler then offers it jobs.
   */
  put(cap: NodeCapacity, owner: unknown): boolean {
    this.ops++;
    const entry = this.entries.get(cap.nodeId);
    if (entry === undefined) {
      const created: NodeEntry = { cap, owner, pending: undefined, used: cap.used, load: cap.runningJobs, free: false };
      this.entries.set(cap.nodeId, created);
      this.indexOffer(created);
      this.version++;
      return this.refresh(created);
    }
    const before = entry.used;
    const wasFree = entry.free;
    const newOffer = !sameOffer(entry.cap, cap);
    if (newOffer) {
      this.unindexOffer(entry);
      entry.cap = cap;
      this.indexOffer(entry);
      this.version++;
    }
    entry.cap = cap;
    entry.owner = owner;
    const free = this.refresh(entry);
    return free && (newOffer || !wasFree || less(entry.used, before));
  }

  /** Forgets the node, if `owner` still reports it. */
  remove(nodeId: string, owner: unknown): void {
    const entry = this.entries.get(nodeId);
    if (entry === undefined || entry.owner !== owner) return;
    this.ops++;
    this.setFree(entry, false);
    this.unindexOffer(entry);
    this.entries.delete(nodeId);
    this.version++;
  }

  /** Takes no jobs until its next report (an assignment to it failed). */
  suspend(nodeId: string): void {
    const entry = this.entries.get(nodeId);
    if (entry === undefined) return;
    this.ops++;
    entry.cap = { ...entry.cap, accepting: false };
    this.refresh(entry);
  }

  /** Counts a job being placed on the node against its room until `release`. */
  reserve(entry: NodeEntry, jobId: string, need: Resources): void {
    this.ops++;
    (entry.pending ??= new Map()).set(jobId, need);
    this.refresh(entry);
  }

  /** The placement is settled (the node's report now holds it, or it failed); true when the node has room. */
  release(nodeId: string, jobId: string): boolean {
    const entry = this.entries.get(nodeId);
    if (entry?.pending?.delete(jobId) !== true) return false;
    this.ops++;
    return this.refresh(entry);
  }

  /** True when the node may take a job of this shape now. */
  canTake(entry: NodeEntry, selector: PlacementSelector, need: Resources): boolean {
    this.ops++;
    return entry.free && fits(need, entry.cap.maxResources, entry.used) && selectorMatches(selector, entry.cap);
  }

  /** The node to place a job needing this on, by the policy; undefined when none has room. */
  find(selector: PlacementSelector, need: Resources): NodeEntry | undefined {
    const terms = this.termSets(selector);
    if (terms === undefined) return undefined;
    const smallest = terms.reduce<Set<NodeEntry> | undefined>((a, b) => (a === undefined || b.size < a.size ? b : a), undefined);
    // Nodes with room in load order stop at the first that fits: cheaper, unless the selector
    // narrows the fleet to far fewer nodes than have room. Either way at most 4 × the smallest term's nodes.
    if (smallest === undefined || smallest.size * 4 >= this.freeCount) return this.firstFree((e) => this.canTake(e, selector, need));
    let best: NodeEntry | undefined;
    for (const entry of smallest) {
      if (!this.canTake(entry, selector, need)) continue;
      if (best === undefined || (this.policy === 'spread' ? entry.load < best.load : entry.load > best.load)) best = entry;
    }
    return best;
  }

  /** True when some registered node matches the selector and could fit `need` when idle. */
  anyMatches(selector: PlacementSelector, need: Resources): boolean {
    const terms = this.termSets(selector);
    if (terms === undefined) return false;
    const smallest = terms.reduce<Iterable<NodeEntry>>((a, b) => (b.size < sizeOf(a) ? b : a), this.entries.values());
    for (const entry of smallest) {
      this.ops++;
      if (selectorMatches(selector, entry.cap) && fits(need, entry.cap.maxResources, NO_USE)) return true;
    }
    return false;
  }

  /** Every registered node's record, for tests and diagnostics. */
  nodes(): IterableIterator<{ cap: NodeCapacity; used: Resources; load: number; free: boolean }> {
    return this.entries.values();
  }

  /** The sets of nodes offering each term of the selector; undefined when a term has none. */
  private termSets(selector: PlacementSelector): Set<NodeEntry>[] | undefined {
    const sets: Set<NodeEntry>[] = [];
    const add = (set: Set<NodeEntry> | undefined): boolean => {
      if (set === undefined || set.size === 0) return false;
      sets.push(set);
      return true;
    };
    if (selector.runner_type !== undefined && !add(this.byRunnerType.get(selector.runner_type))) return undefined;
    if (selector.job_type !== undefined && !add(this.byJobType.get(selector.job_type))) return undefined;
    for (const [key, value] of Object.entries(selector.tags ?? {})) {
      if (!add(this.byTag.get(tagKey(key, value)))) return undefined;
    }
    for (const feature of selector.wire_features ?? []) if (!add(this.byFeature.get(feature))) return undefined;
    return sets;
  }

  /** The first node with room that `ok` accepts, least loaded first (most loaded for binpack). */
  private firstFree(ok: (entry: NodeEntry) => boolean): NodeEntry | undefined {
    const spread = this.policy === 'spread';
    for (let i = spread ? 0 : this.freeByLoad.length - 1; spread ? i < this.freeByLoad.length : i >= 0; i += spread ? 1 : -1) {
      const level = this.freeByLoad[i];
      if (level === undefined) continue;
      for (const entry of level) if (ok(entry)) return entry;
    }
    return undefined;
  }

  /** Recomputes room and load from the report and what is pending; returns whether it has room. */
  private refresh(entry: NodeEntry): boolean {
    const pending = entry.pending;
    entry.used = pending === undefined || pending.size === 0 ? entry.cap.used : sumReserved([entry.cap.used, ...pending.values()]);
    const load = entry.cap.runningJobs + (pending?.size ?? 0);
    const free = entry.cap.accepting && hasRoom(entry.cap.maxResources, entry.used);
    if (free !== entry.free || load !== entry.load) {
      this.setFree(entry, false);
      entry.load = load;
      this.setFree(entry, free);
    }
    return free;
  }

  private setFree(entry: NodeEntry, free: boolean): void {
    if (entry.free === free) return;
    entry.free = free;
    if (free) {
      let level = this.freeByLoad[entry.load];
      if (level === undefined) this.freeByLoad[entry.load] = level = new Set();
      level.add(entry);
      this.freeCount++;
    } else {
      this.freeByLoad[entry.load]?.delete(entry);
      this.freeCount--;
      while (this.freeByLoad.length > 0 && (this.freeByLoad.at(-1)?.size ?? 0) === 0) this.freeByLoad.pop();
    }
  }

  private indexOffer(entry: NodeEntry): void {
    for (const t of entry.cap.runnerTypes) addTo(this.byRunnerType, t, entry);
    for (const t of entry.cap.supportedJobTypes) addTo(this.byJobType, t, entry);
    for (const [k, v] of Object.entries(entry.cap.tags)) addTo(this.byTag, tagKey(k, v), entry);
    for (const f of entry.cap.wireFeatures ?? []) addTo(this.byFeature, f, entry);
  }

  private unindexOffer(entry: NodeEntry): void {
    for (const t of entry.cap.runnerTypes) removeFrom(this.byRunnerType, t, entry);
    for (const t of entry.cap.supportedJobTypes) removeFrom(this.byJobType, t, entry);
    for (const [k, v] of Object.entries(entry.cap.tags)) removeFrom(this.byTag, tagKey(k, v), entry);
    for (const f of entry.cap.wireFeatures ?? []) removeFrom(this.byFeature, f, entry);
  }
}

const NO_USE: Resources = { cpu_cores: 0, memory_mb: 0, disk_gb: 0 };

function tagKey(key: string, value: string): string {
  return `${key}\u0000${value}`;
}

function sizeOf(nodes: Iterable<NodeEntry>): number {
  return nodes instanceof Set ? nodes.size : Number.POSITIVE_INFINITY;
}

/** What the node offers is the same objects as before (a report from the same registration). */
function sameOffer(a: NodeCapacity, b: NodeCapacity): boolean {
  return (
    a.runnerTypes === b.runnerTypes && a.supportedJobTypes === b.supportedJobTypes && a.tags === b.tags && a.maxResources === b.maxResources && a.wireFeatures === b.wireFeatures
  );
}

/** Some resource is used less than before. */
function less(now: Resources, before: Resources): boolean {
  return now.cpu_cores < before.cpu_cores || now.memory_mb < before.memory_mb || now.disk_gb < before.disk_gb;
}

function addTo(index: Map<string, Set<NodeEntry>>, key: string, entry: NodeEntry): void {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(entry);
}

function removeFrom(index: Map<string, Set<NodeEntry>>, key: string, entry: NodeEntry): void {
  const set = index.get(key);
  set?.delete(entry);
  if (set?.size === 0) index.delete(key);
}
