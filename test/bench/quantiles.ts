// Percentiles of benchmark samples, nearest-rank on a sorted copy.

export interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** The `q` quantile (0..1) of ascending `sorted`; NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = Float64Array.from(samples).sort();
  const values = Array.from(sorted);
  return { count: values.length, p50: quantile(values, 0.5), p99: quantile(values, 0.99), max: values.at(-1) ?? Number.NaN };
}
