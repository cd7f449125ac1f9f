// `muster job artifacts ID [--download DIR] [--attempt N]`: a job's artifacts through the admin
// HTTP API (PROTOCOL.md section 8): listed, or each downloaded (the last completed attempt's by
// name, or attempt N's) into DIR, streamed to disk and checked against its sha256 on the way.
// A name comes from a node: one that would land outside DIR (absolute, or through `..`) is refused.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Command } from 'commander';
import type { ArtifactAnswer } from '../supervisor/admin/routes-artifacts.js';
import { createApiClient, withClientOptions, type ApiClient, type ClientOptions } from './api-client.js';

interface ArtifactsOptions extends ClientOptions {
  download?: string;
  attempt?: string;
  json?: boolean;
}

export function artifactsCommand(): Command {
  return withClientOptions(new Command('artifacts'))
    .description("list a job's artifacts, or download them")
    .argument('<job-id>')
    .option('--download <dir>', 'download each artifact into DIR (by its name), checking its sha256')
    .option('--attempt <n>', 'the artifacts of attempt N (default: the last attempt that stored each name)')
    .option('--json', "print the API's JSON answer instead (for scripts)")
    .action(async (jobId: string, options: ArtifactsOptions) => artifacts(jobId, options));
}

async function artifacts(jobId: string, options: ArtifactsOptions): Promise<void> {
  const client = await createApiClient(options);
  const all = await client.get<ArtifactAnswer[]>(`/v1/jobs/${encodeURIComponent(jobId)}/artifacts`);
  const attempt = options.attempt === undefined ? undefined : Number(options.attempt);
  if (attempt !== undefined && (!Number.isSafeInteger(attempt) || attempt < 1)) throw new Error(`invalid --attempt "${options.attempt}": expected a whole number from 1`);
  const chosen = latestByName(attempt === undefined ? all : all.filter((a) => a.attempt === attempt));
  if (options.download === undefined) {
    if (options.json === true) process.stdout.write(`${JSON.stringify(chosen, null, 2)}\n`);
    else process.stdout.write(table(chosen));
    return;
  }
  if (chosen.length === 0) throw new Error(`job ${jobId} has no artifacts${attempt === undefined ? '' : ` in attempt ${attempt}`}`);
  for (const artifact of chosen) {
    const path = await download(client, jobId, artifact, options.download);
    process.stdout.write(`${path}\t${artifact.size}\t${artifact.sha256}\n`);
  }
}

/** One artifact per name: the last attempt's (the list is oldest first). */
function latestByName(list: readonly ArtifactAnswer[]): ArtifactAnswer[] {
  const byName = new Map<string, ArtifactAnswer>();
  for (const a of list) byName.set(a.name, a);
  return [...byName.values()];
}

function table(list: readonly ArtifactAnswer[]): string {
  if (list.length === 0) return 'no artifacts\n';
  const rows = [['NAME', 'SIZE', 'ATTEMPT', 'SHA256'], ...list.map((a) => [a.name, String(a.size), String(a.attempt), a.sha256])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** Streams one artifact to `dir/name` (through a temporary file), its digest checked; returns the path. */
async function download(client: ApiClient, jobId: string, artifact: ArtifactAnswer, dir: string): Promise<string> {
  const root = resolve(dir);
  const target = resolve(root, artifact.name);
  const inside = relative(root, target);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) throw new Error(`artifact name ${JSON.stringify(artifact.name)} would be written outside ${dir}; not downloaded`);
  await mkdir(dirname(target), { recursive: true });
  const path = `/v1/jobs/${encodeURIComponent(jobId)}/artifacts/${artifact.name.split('/').map(encodeURIComponent).join('/')}?attempt=${artifact.attempt}`;
  const res = await client.stream(path);
  if (res.body === null) throw new Error(`artifact ${artifact.name}: the answer has no body`);
  const hash = createHash('sha256');
  const partial = join(dirname(target), `.${artifact.artifact_id}.part`);
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          done(null, chunk);
        },
      }),
      createWriteStream(partial, { mode: 0o644 }),
    );
    const digest = hash.digest('hex');
    if (digest !== artifact.sha256) throw new Error(`artifact ${artifact.name}: downloaded bytes have sha256 ${digest}, not ${artifact.sha256}`);
    await rename(partial, target);
  } finally {
    await rm(partial, { force: true });
  }
  return target;
}
