// The share of a CPU profile's busy time spent inside some code, inclusive: a sample counts
// when any frame of its stack is in a file the predicate accepts (e.g. the job store, and the
// SQLite calls it makes). Read from a V8 `.cpuprofile` (node --cpu-prof).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

export interface StackShare {
  /** Sampled time not idle (and not GC-only), in ms. */
  busyMs: number;
  /** Of that, in ms, with a frame the predicate accepts on the stack. */
  insideMs: number;
}

/** Between CLOCK_MONOTONIC µs `fromUs` and `toUs` (the profile's clock). */
export function stackShare(path: string, inside: (file: string) => boolean, fromUs = 0, toUs = Number.MAX_SAFE_INTEGER): StackShare {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const memo = new Map<number, boolean>();
  const isInside = (id: number): boolean => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id)!;
    const url = node.callFrame.url;
    const file = url.startsWith('file://') ? fileURLToPath(url) : url;
    const up = parent.get(id);
    const result = (file !== '' && inside(file)) || (up !== undefined && isInside(up));
    memo.set(id, result);
    return result;
  };
  let t = profile.startTime;
  let busy = 0;
  let within = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (t < fromUs || t > toUs) return;
    if (byId.get(id)!.callFrame.functionName === '(idle)') return;
    busy += delta;
    if (isInside(id)) within += delta;
  });
  return { busyMs: busy / 1000, insideMs: within / 1000 };
}
