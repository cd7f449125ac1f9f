// The circuit breaker for failing nodes: a node whose attempts keep failing for reasons of its
// own (it rejects them, does not accept them in time, or resumes without a job it held) is
// benched: it gets no new job for a cool-off that doubles with each bench in a row, up to a
// ceiling. Its first completed job resets it; an operator may lift a bench early. A job that
// fails with its own non-zero exit code says nothing about the node and is not counted.
// Cost: one map entry per node that failed lately, one timer per benched node; nothing per
// heartbeat or per healthy node.

export interface BreakerPolicy {
  /** Failures in a row that bench a node. */
  breakerFailures: number;
  /** The first bench's length; each next one in a row is twice the last. */
  breakerCooloffMs: number;
  breakerMaxCooloffMs: number;
}

/** A benched node, as the API shows it. */
export interface Bench {
  /** Epoch ms. */
  until: number;
  /** The failure that benched it. */
  reason: string;
}

interface NodeRecord {
  /** Failures in a row since the last success or bench. */
  failures: number;
  /** Benches in a row since the last success: the next cool-off is `cooloff × 2^benches`. */
  benches: number;
  bench?: Bench;
  timer?: NodeJS.Timeout;
}

export class NodeBreaker {
  readonly #nodes = new Map<string, NodeRecord>();
  /** Who to tell when a node is benched or returns (the node's fleet feed). */
  readonly #followers = new Map<string, () => void>();

  constructor(
    private readonly policy: BreakerPolicy,
    private readonly onBench: (nodeId: string, bench: Bench) => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** An attempt failed for a reason of the node's own. */
  failed(nodeId: string, reason: string): void {
    const record = this.#record(nodeId);
    if (record.bench !== undefined) return;
    record.failures++;
    if (record.failures < this.policy.breakerFailures) return;
    const cooloff = Math.min(this.policy.breakerCooloffMs * 2 ** record.benches, this.policy.breakerMaxCooloffMs);
    record.failures = 0;
    record.benches++;
    record.bench = { until: this.now() + cooloff, reason };
    record.timer = setTimeout(() => this.#release(nodeId), cooloff);
    record.timer.unref?.();
    this.onBench(nodeId, record.bench);
    this.#followers.get(nodeId)?.();
  }

  /** The node completed a job: everything is forgiven. */
  succeeded(nodeId: string): void {
    const record = this.#nodes.get(nodeId);
    if (record === undefined) return;
    this.#drop(nodeId, record);
  }

  benched(nodeId: string): Bench | undefined {
    return this.#nodes.get(nodeId)?.bench;
  }

  /** An operator lifts the bench (`muster node unbench`); the count of failures starts again. False when not benched. */
  lift(nodeId: string): boolean {
    const record = this.#nodes.get(nodeId);
    if (record?.bench === undefined) return false;
    this.#drop(nodeId, record);
    return true;
  }

  /** Calls `changed` whenever the node is benched or returns; returns the function that stops it. */
  follow(nodeId: string, changed: () => void): () => void {
    this.#followers.set(nodeId, changed);
    return () => {
      if (this.#followers.get(nodeId) === changed) this.#followers.delete(nodeId);
    };
  }

  /** The node is gone for good. */
  forget(nodeId: string): void {
    const record = this.#nodes.get(nodeId);
    if (record !== undefined) {
      clearTimeout(record.timer);
      this.#nodes.delete(nodeId);
    }
    this.#followers.delete(nodeId);
  }

  stop(): void {
    for (const record of this.#nodes.values()) clearTimeout(record.timer);
    this.#nodes.clear();
  }

  /** The cool-off ended: the node may take jobs; its next bench in a row lasts twice as long. */
  #release(nodeId: string): void {
    const record = this.#nodes.get(nodeId);
    if (record === undefined) return;
    record.bench = undefined;
    record.timer = undefined;
    this.#followers.get(nodeId)?.();
  }

  #drop(nodeId: string, record: NodeRecord): void {
    const wasBenched = record.bench !== undefined;
    clearTimeout(record.timer);
    this.#nodes.delete(nodeId);
    if (wasBenched) this.#followers.get(nodeId)?.();
  }

  #record(nodeId: string): NodeRecord {
    let record = this.#nodes.get(nodeId);
    if (record === undefined) {
      record = { failures: 0, benches: 0 };
      this.#nodes.set(nodeId, record);
    }
    return record;
  }
}
