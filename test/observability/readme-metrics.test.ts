// The README's metrics tables are complete: one row per metric the plane and the agent
// define, with its type and labels, and no row for a metric that is gone.
import { readFileSync } from 'node:fs';
import type { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { AgentMetrics } from '../../observability/agent-metrics.js';
import { ClusterMetrics, PlaneMetrics } from '../../observability/plane-metrics.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

interface Row {
  type: string;
  labels: string[];
}

/** The rows of the tables under `### Metrics`, by metric name. */
function readmeRows(): Map<string, Row> {
  const start = README.indexOf('\n### Metrics\n');
  const section = README.slice(start, README.indexOf('\n### ', start + 1));
  const rows = new Map<string, Row>();
  for (const line of section.split('\n')) {
    const match = /^\| `([a-z_]+)` \| (\w+) \|([^|]*)\|/.exec(line);
    if (match === null) continue;
    const labels = [...match[3]!.matchAll(/`(\w+)`/g)].map((m) => m[1]!);
    rows.set(match[1]!, { type: match[2]!, labels });
  }
  return rows;
}

/** Every metric of `registries`, by name (prom-client's own default metrics are not ours to list). */
function defined(...registries: Registry[]): Map<string, Row> {
  const metrics = new Map<string, Row>();
  for (const registry of registries) {
    for (const metric of registry.getMetricsAsArray()) {
      const { name, type, labelNames } = metric as unknown as { name: string; type: string; labelNames?: readonly string[] };
      metrics.set(name, { type, labels: [...(labelNames ?? [])] });
    }
  }
  return metrics;
}

it('lists every metric of the plane, the cluster and the agent, with its type and labels', () => {
  const plane = new PlaneMetrics({ processMetrics: false });
  new ClusterMetrics(plane.registry);
  const agent = new AgentMetrics({ processMetrics: false });
  const metrics = defined(plane.registry, agent.registry);
  const rows = readmeRows();
  expect([...rows.keys()].sort()).toEqual([...metrics.keys()].sort());
  for (const [name, row] of rows) expect(row, name).toEqual(metrics.get(name));
});

it('names every metric with the muster_ prefix and Prometheus suffixes', () => {
  for (const [name, { type }] of readmeRows()) {
    expect(name).toMatch(/^muster_[a-z_]+$/);
    if (type === 'counter') expect(name).toMatch(/_total$/);
    else expect(name).not.toMatch(/_total$/);
  }
});
