// The plane's masking of a job's secrets in its output (supervisor/jobs/output-masks.ts), per log
// chunk, in this process: 4 KiB chunks of build-log text through the masks of a job with 5
// secrets (one of them split across two chunks now and then), beside the same chunks copied
// through a string concatenation (the baseline: what storing them costs the plane at least).
// Times are CPU time (user + system) of this process per chunk: on a machine other work keeps
// busy they stay what the work costs, where wall-clock time would count the waits too.
import { OutputMasks } from '../../supervisor/jobs/output-masks.js';

const CHUNKS = 20_000;
const RUNS = 5;

const SECRETS = {
  npm: 'npm_4f1c2a9be7d3405f8a6c1e2d3b4a5f60',
  aws: 'AKIAIOSFODNN7EXAMPLE',
  db: 'postgres://ci:s3cr3t-pa55w0rd@db.internal:5432/app',
  github: 'ghp_0123456789abcdefghijklmnopqrstuvwxyzAB',
  slack: 'xoxb-1234-5678-abcdefghijklmnop',
};

/** Build-log lines, with a secret in one line of every 50, one split across a chunk boundary now and then. */
function chunks(): string[] {
  const lines: string[] = [];
  let length = 0;
  for (let i = 0; length < CHUNKS * 4096; i++) {
    const secret = i % 50 === 0 ? ` token=${Object.values(SECRETS)[i % 5]}` : '';
    const line = `[${String(i).padStart(6, '0')}] compiling src/module-${i % 97}/file-${i % 13}.ts (${(i * 7) % 1000} ms)${secret}\n`;
    lines.push(line);
    length += line.length;
  }
  const text = lines.join('');
  return Array.from({ length: CHUNKS }, (_, k) => text.slice(k * 4096, (k + 1) * 4096));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** CPU microseconds since `since` (a process.cpuUsage reading). */
function cpuUsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

/** Median CPU µs per chunk: masked, and the copy baseline. */
export function measureMasking(): { maskedUs: number; baselineUs: number } {
  const data = chunks();
  const masked: number[] = [];
  const baseline: number[] = [];
  let sink = 0;
  for (let run = 0; run < RUNS; run++) {
    const masks = OutputMasks.of(SECRETS)!;
    let started = process.cpuUsage();
    for (let seq = 0; seq < data.length; seq++) {
      const out = masks.chunk('stdout', seq, data[seq]!);
      masks.settled('stdout', seq, true);
      sink += out.length;
    }
    masked.push(cpuUsSince(started) / data.length);
    started = process.cpuUsage();
    for (const chunk of data) sink += (' ' + chunk).slice(1).length;
    baseline.push(cpuUsSince(started) / data.length);
  }
  if (sink < 0) console.log(sink); // keeps the work from being optimised away
  return { maskedUs: median(masked), baselineUs: median(baseline) };
}
