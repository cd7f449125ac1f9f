// Counters and gauges whose values are read at scrape time, through prom-client's `collect`
// callbacks: the code that counts keeps plain numbers (a field, a Map from label to count),
// which costs an addition where prom-client's `inc` would validate and hash labels per call,
// and a gauge that needs a look at the fleet or the queue is computed once per scrape only.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Separates the values of several labels in one `LabelledCount` key (no label value holds it). */
const JOIN = '\n';

/** The key of a count with several labels, their values in the order of the counter's `labelNames`. */
export function labelKey(...values: string[]): string {
  return values.join(JOIN);
}

/** Counts by label values (one, or several joined by `labelKey`), kept as plain numbers until a scrape reads them. */
export class LabelledCount {
  private readonly counts = new Map<string, number>();

  /** Adds `n` (default 1) to the count of `label`. */
  add(label: string, n = 1): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + n);
  }

  /** The count of `label` (0 when never added to). */
  of(label: string): number {
    return this.counts.get(label) ?? 0;
  }

  /** The sum over every label. */
  total(): number {
    let sum = 0;
    for (const n of this.counts.values()) sum += n;
    return sum;
  }

  entries(): IterableIterator<[string, number]> {
    return this.counts.entries();
  }
}

interface Described {
  name: string;
  help: string;
}

/**
 * A counter with labels, read at scrape from `counts` (keys made by `labelKey` when there are
 * several), or from a function that returns them.
 */
export function labelledCounter(
  registry: Registry,
  d: Described & { labelNames: readonly string[] },
  counts: LabelledCount | (() => Iterable<[string, number]>),
): void {
  const read = typeof counts === 'function' ? counts : () => counts.entries();
  new Counter({
    name: d.name,
    help: d.help,
    labelNames: [...d.labelNames],
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of read()) this.inc(labelsOf(d.labelNames, key), n);
    },
  });
}

function labelsOf(names: readonly string[], key: string): Record<string, string> {
  if (names.length === 1) return { [names[0] as string]: key };
  const values = key.split(JOIN);
  return Object.fromEntries(names.map((name, i) => [name, values[i] ?? '']));
}

/** A counter without labels, read from `read()` at scrape. */
export function readCounter(registry: Registry, d: Described, read: () => number): void {
  new Counter({
    name: d.name,
    help: d.help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/**
 * A gauge with one label, set at scrape from `read()` (label value to number); label values
 * it no longer returns are dropped. `read` may be async (a store count).
 */
export function labelledGauge(
  registry: Registry,
  d: Described & { labelName: string },
  read: () => Iterable<[string, number]> | Promise<Iterable<[string, number]>>,
): void {
  new Gauge({
    name: d.name,
    help: d.help,
    labelNames: [d.labelName],
    registers: [registry],
    async collect() {
      const values = await read();
      this.reset();
      for (const [label, n] of values) this.set({ [d.labelName]: label }, n);
    },
  });
}

/** A gauge without labels, set from `read()` at scrape. */
export function readGauge(registry: Registry, d: Described, read: () => number): void {
  new Gauge({
    name: d.name,
    help: d.help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}
