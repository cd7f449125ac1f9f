// A Prometheus histogram kept in plain numbers, for observations on the plane's hot path (a
// heartbeat lag on each of ~350,000 heartbeats a second). prom-client's own `Histogram.observe`
// validates and hashes its labels on every call; this one costs a few comparisons and two
// additions, and hands prom-client's registry the same shape its histograms export, at scrape.
import type { Metric, Registry } from 'prom-client';

export interface CountingHistogramOptions {
  name: string;
  help: string;
  /** Upper bounds, ascending, in the metric's unit (seconds for `_seconds`). */
  buckets: readonly number[];
  /** One label whose values each get their own buckets; none: one series. */
  labelName?: string;
}

/** The buckets of one series: `counts[i]` observations fell at or under `bounds[i]` and over the one before; the last slot is `+Inf`. */
class Series {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(size: number) {
    this.counts = new Array<number>(size + 1).fill(0);
  }
}

/** The value shape prom-client's registry prints (what its own histograms return from `get`). */
interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

export class CountingHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** As prom-client's metrics have it: the label names (`le` aside). */
  readonly labelNames: readonly string[];
  private readonly bounds: readonly number[];
  private readonly series = new Map<string, Series>();
  private readonly unlabelled: Series;

  constructor(
    private readonly options: CountingHistogramOptions,
    registry: Registry,
  ) {
    this.name = options.name;
    this.help = options.help;
    this.bounds = options.buckets;
    this.labelNames = options.labelName === undefined ? [] : [options.labelName];
    this.unlabelled = new Series(this.bounds.length);
    // prom-client takes any object with its metrics' members (name, help, type, get, reset).
    registry.registerMetric(this as unknown as Metric);
  }

  /** One observation (unlabelled histogram). */
  observe(value: number): void {
    this.add(this.unlabelled, value);
  }

  /** Observations so far (unlabelled histogram). */
  get count(): number {
    return this.unlabelled.count;
  }

  /** One observation in the series of `label` (a histogram with `labelName`). */
  observeBy(label: string, value: number): void {
    let series = this.series.get(label);
    if (series === undefined) this.series.set(label, (series = new Series(this.bounds.length)));
    this.add(series, value);
  }

  private add(series: Series, value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    (series.counts[i] as number)++;
    series.sum += value;
    series.count++;
  }

  /** prom-client's registry reads this at scrape. */
  get(): { name: string; help: string; type: string; aggregator: string; values: ExportedValue[] } {
    const values: ExportedValue[] = [];
    const { labelName } = this.options;
    if (labelName === undefined) this.export(this.unlabelled, {}, values);
    else for (const [label, series] of this.series) this.export(series, { [labelName]: label }, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
    this.unlabelled.counts.fill(0);
    this.unlabelled.sum = 0;
    this.unlabelled.count = 0;
  }

  private export(series: Series, labels: Record<string, string>, into: ExportedValue[]): void {
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += series.counts[i] as number;
      const le = i < this.bounds.length ? (this.bounds[i] as number) : '+Inf';
      into.push({ labels: { ...labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    into.push({ labels, value: series.sum, metricName: `${this.name}_sum` });
    into.push({ labels, value: series.count, metricName: `${this.name}_count` });
  }
}
