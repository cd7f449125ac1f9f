// Reads what `npm run bench -- fleet` asks the plane to write and prints where it goes:
//
//   node --import tsx test/bench/profile-summary.ts FILE.cpuprofile [--from-us A --to-us B]
//     self time by function and by source file (or package), optionally only the samples
//     between two CLOCK_MONOTONIC µs stamps (the fleet bench prints its windows so);
//     with --inclusive also the time of each function with its callees
//   node --import tsx test/bench/profile-summary.ts FILE.heapsnapshot [--per N]
//     live objects by constructor (count and self size), divided by N (e.g. the node count)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

function summarizeCpu(path: string, fromUs: number, toUs: number): void {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  // Inclusive: a sample counts once for every distinct function on its stack.
  const inclusive = new Map<string, number>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const nameOf = (frame: CallFrame): string => {
    const file = fileOf(frame.url) || frame.functionName;
    return `${frame.functionName || '(anonymous)'}  ${file}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
  };
  let t = profile.startTime;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (t < fromUs || t > toUs) return;
    const frame = frames.get(id)!;
    const file = fileOf(frame.url) || frame.functionName;
    const name = nameOf(frame);
    byFunction.set(name, (byFunction.get(name) ?? 0) + delta);
    if (frame.functionName !== '(idle)') {
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) seen.add(nameOf(frames.get(at)!));
      for (const n of seen) inclusive.set(n, (inclusive.get(n) ?? 0) + delta);
    }
    byFile.set(file, (byFile.get(file) ?? 0) + delta);
    total += delta;
  });
  const busy = total - (byFile.get('(idle)') ?? 0);
  console.log(`${path}: ${(total / 1e6).toFixed(1)} s of samples, ${(busy / 1e6).toFixed(1)} s not idle (percentages are of the non-idle time)\n`);
  printTop('self time by source file or package', byFile, busy, 25);
  printTop('self time by function', byFunction, busy, 40);
  if (process.argv.includes('--inclusive')) printTop('inclusive time by function (self and callees)', inclusive, busy, 80);
}

/** A path under the checkout, `pkg:name` inside node_modules, or a `node:` built-in. */
function fileOf(url: string): string {
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const modules = path.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = path.slice(modules + '/node_modules/'.length).split('/');
    return `pkg:${rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  return path.startsWith(root) ? path.slice(root.length) : path;
}

function printTop(title: string, totals: Map<string, number>, busy: number, count: number): void {
  console.log(title);
  const rows = [...totals].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, count);
  for (const [name, us] of rows) console.log(`  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  console.log('');
}

function summarizeHeap(path: string, per: number): void {
  const snapshot = JSON.parse(readFileSync(path, 'utf8')) as HeapSnapshot;
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number];
  const rows = new Map<string, { count: number; bytes: number }>();
  let totalBytes = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const name = snapshot.strings[snapshot.nodes[i + nameAt]!]!;
    const bytes = snapshot.nodes[i + sizeAt]!;
    // Strings, code and arrays by type; objects and closures by constructor or function name.
    const key = type === 'object' || type === 'closure' ? `${type} ${name.slice(0, 80)}` : `(${type})`;
    const row = rows.get(key) ?? { count: 0, bytes: 0 };
    row.count++;
    row.bytes += bytes;
    rows.set(key, row);
    totalBytes += bytes;
  }
  console.log(`${path}: ${(totalBytes / 2 ** 20).toFixed(1)} MiB live in ${snapshot.nodes.length / width} objects; per ${per}: ${(totalBytes / 1024 / per).toFixed(1)} KiB\n`);
  console.log(`  ${'KiB/unit'.padStart(9)} ${'objs/unit'.padStart(9)}  ${'MiB'.padStart(7)}  kind`);
  const top = [...rows].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 45);
  for (const [key, { count, bytes }] of top) {
    console.log(`  ${(bytes / 1024 / per).toFixed(2).padStart(9)} ${(count / per).toFixed(1).padStart(9)}  ${(bytes / 2 ** 20).toFixed(1).padStart(7)}  ${key}`);
  }
}

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

const file = process.argv[2];
if (file === undefined) {
  console.error('usage: profile-summary.ts FILE.cpuprofile [--from-us A --to-us B] [--inclusive] | FILE.heapsnapshot [--per N]');
  process.exit(2);
} else if (file.endsWith('.heapsnapshot')) {
  summarizeHeap(file, option('--per', 1));
} else {
  summarizeCpu(file, option('--from-us', 0), option('--to-us', Number.MAX_SAFE_INTEGER));
}
