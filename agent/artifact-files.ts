// The files a job's `job.artifacts` patterns name (PROTOCOL.md section 8), in its work directory:
// each pattern is a path relative to it whose segments may hold `*` and `?` (within a segment),
// `[...]` classes, and `**` (any number of directories). Only regular files match, found without
// following symbolic links (a link could point out of the work directory); a pattern is walked
// segment by segment from its literal start, so `dist/*.tar.gz` reads `dist/` alone. Bounded:
// at most ARTIFACTS_MAX files, and a walk of at most MAX_DIRS directories per pattern.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS_MAX, type ArtifactPattern } from '../protocol/messages.js';

/** Directories one pattern may read: a `**` over a huge tree stops there. */
const MAX_DIRS = 10_000;

/** One file to upload: its path in the work directory and the name it is uploaded as. */
export interface ArtifactFile {
  /** Relative to the work directory, `/`-separated. */
  path: string;
  name: string;
  size: number;
}

/** The files `patterns` match under `workDir`, each once, in pattern then path order. */
export async function findArtifactFiles(workDir: string, patterns: readonly ArtifactPattern[]): Promise<ArtifactFile[]> {
  const found = new Map<string, ArtifactFile>();
  const names = new Set<string>();
  for (const pattern of patterns) {
    const matches = await matchPattern(workDir, pattern.path);
    // `name` renames a pattern's one match; with several, each keeps its path as its name.
    const rename = pattern.name !== undefined && matches.length === 1 ? pattern.name : undefined;
    for (const match of matches) {
      if (found.size >= ARTIFACTS_MAX) return [...found.values()];
      const name = rename ?? match.path;
      if (found.has(match.path) || names.has(name)) continue;
      found.set(match.path, { ...match, name });
      names.add(name);
    }
  }
  return [...found.values()];
}

/** Regular files under `root` matching one pattern, sorted by path. */
export async function matchPattern(root: string, pattern: string): Promise<Omit<ArtifactFile, 'name'>[]> {
  const segments = pattern.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.length === 0 || segments.includes('..') || pattern.startsWith('/')) return [];
  const out: Omit<ArtifactFile, 'name'>[] = [];
  const budget = { dirs: MAX_DIRS };
  await walk(root, [], segments, out, budget);
  const unique = new Map(out.map((f) => [f.path, f]));
  return [...unique.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function walk(root: string, at: string[], rest: string[], out: Omit<ArtifactFile, 'name'>[], budget: { dirs: number }): Promise<void> {
  if (out.length >= ARTIFACTS_MAX) return;
  const [segment, ...tail] = rest;
  if (segment === undefined) return;
  if (segment === '**') {
    // Zero directories, then one more and `**` again.
    await walk(root, at, tail, out, budget);
    for (const dir of await entries(root, at, budget, 'dir')) await walk(root, [...at, dir], rest, out, budget);
    return;
  }
  const literal = !/[*?[]/.test(segment);
  const test = literal ? (n: string) => n === segment : segmentMatcher(segment);
  if (tail.length === 0) {
    const candidates = literal ? [segment] : await entries(root, at, budget, 'file');
    for (const name of candidates) {
      if (!test(name)) continue;
      const info = await lstat(join(root, ...at, name)).catch(() => undefined);
      if (info?.isFile() === true) out.push({ path: [...at, name].join('/'), size: info.size });
    }
    return;
  }
  const dirs = literal ? [segment] : await entries(root, at, budget, 'dir');
  for (const dir of dirs) {
    if (!test(dir)) continue;
    if (literal) {
      const info = await lstat(join(root, ...at, dir)).catch(() => undefined);
      if (info?.isDirectory() !== true) continue;
    }
    await walk(root, [...at, dir], tail, out, budget);
  }
}

/** Names of the directory's subdirectories or regular files (no symbolic links), within the walk's budget. */
async function entries(root: string, at: string[], budget: { dirs: number }, kind: 'dir' | 'file'): Promise<string[]> {
  if (budget.dirs <= 0) return [];
  budget.dirs--;
  const list = await readdir(join(root, ...at), { withFileTypes: true }).catch(() => []);
  return list.filter((e) => (kind === 'dir' ? e.isDirectory() : e.isFile())).map((e) => e.name);
}

/** A matcher of one segment: `*` and `?` never cross a `/`, `[...]` is a class (`[!...]` negated). */
export function segmentMatcher(segment: string): (name: string) => boolean {
  let source = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close === -1) {
        source += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      const negated = body.startsWith('!') || body.startsWith('^');
      if (negated) body = body.slice(1);
      source += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = close;
    } else source += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  const re = new RegExp(`^${source}$`, 'u');
  // Hidden files match a wildcard only when the segment itself starts with a dot, as in a shell.
  return (name) => re.test(name) && (!name.startsWith('.') || segment.startsWith('.'));
}
