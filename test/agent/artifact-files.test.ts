// Which files a job's `job.artifacts` patterns name in its work directory (agent/artifact-files.ts):
// wildcards within a segment, `**` across directories, classes, renames of a single match, no
// symbolic links followed (one could point out of the work directory), nothing outside it.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findArtifactFiles, matchPattern, segmentMatcher } from '../../agent/artifact-files.js';

let root: string;
let outside: string;
beforeAll(() => {
  root = mkdtempSync(join(os.tmpdir(), 'muster-artifact-files-'));
  outside = mkdtempSync(join(os.tmpdir(), 'muster-artifact-outside-'));
  writeFileSync(join(outside, 'secret.tar.gz'), 'not yours');
  for (const f of ['dist/a.tar.gz', 'dist/b.tar.gz', 'dist/c.txt', 'dist/.hidden.tar.gz', 'dist/sub/d.tar.gz', 'dist/sub/deeper/e.tar.gz', 'report.xml']) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), f);
  }
  symlinkSync(join(outside, 'secret.tar.gz'), join(root, 'dist', 'link.tar.gz'));
  symlinkSync(outside, join(root, 'dist', 'linked-dir'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const paths = async (pattern: string): Promise<string[]> => (await matchPattern(root, pattern)).map((f) => f.path);

describe('artifact files', () => {
  it('matches wildcards within one segment, regular files only, no hidden ones and no links', async () => {
    expect(await paths('dist/*.tar.gz')).toEqual(['dist/a.tar.gz', 'dist/b.tar.gz']);
    expect(await paths('dist/?.t*')).toEqual(['dist/a.tar.gz', 'dist/b.tar.gz', 'dist/c.txt']);
    expect(await paths('dist/[ab].tar.gz')).toEqual(['dist/a.tar.gz', 'dist/b.tar.gz']);
    expect(await paths('dist/[!a].tar.gz')).toEqual(['dist/b.tar.gz']);
    expect(await paths('report.xml')).toEqual(['report.xml']);
    expect(await paths('dist/link.tar.gz')).toEqual([]);
  });

  it('descends with ** (zero or more directories), never through a linked directory', async () => {
    expect(await paths('dist/**/*.tar.gz')).toEqual(['dist/a.tar.gz', 'dist/b.tar.gz', 'dist/sub/d.tar.gz', 'dist/sub/deeper/e.tar.gz']);
    expect(await paths('**/e.tar.gz')).toEqual(['dist/sub/deeper/e.tar.gz']);
    expect(await paths('dist/linked-dir/*')).toEqual([]);
  });

  it('never leaves the work directory', async () => {
    expect(await paths('../*')).toEqual([]);
    expect(await paths('dist/../../*')).toEqual([]);
    expect(await paths(`/${outside}/*`)).toEqual([]);
  });

  it('names each file by its path, or by `name` when its pattern matched one file; each file once', async () => {
    const files = await findArtifactFiles(root, [{ path: 'dist/*.tar.gz', name: 'ignored' }, { path: 'report.xml', name: 'junit.xml' }, { path: 'dist/a.*' }]);
    expect(files.map((f) => [f.path, f.name, f.size])).toEqual([
      ['dist/a.tar.gz', 'dist/a.tar.gz', 13],
      ['dist/b.tar.gz', 'dist/b.tar.gz', 13],
      ['report.xml', 'junit.xml', 10],
    ]);
  });

  it('escapes what is not a wildcard', () => {
    expect(segmentMatcher('a+b(1).txt')('a+b(1).txt')).toBe(true);
    expect(segmentMatcher('a+b(1).txt')('aab(1).txt')).toBe(false);
    expect(segmentMatcher('[x')('[x')).toBe(true);
  });
});
