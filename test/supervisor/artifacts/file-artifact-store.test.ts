// The data directory's artifact store against the ArtifactStore contract, and flat memory
// while a large artifact streams through it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArtifactStore } from '../../../supervisor/artifacts/file-artifact-store.js';
import { MAX_ARTIFACT_BYTES, artifactOf, artifactStoreContract } from './artifact-store-contract.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'muster-artifacts-'));
  dirs.push(dir);
  return dir;
}

const dirOf = new WeakMap<FileArtifactStore, string>();
artifactStoreContract(
  'FileArtifactStore',
  () => {
    const dir = dataDir();
    const store = new FileArtifactStore({ dataDir: dir, maxArtifactBytes: MAX_ARTIFACT_BYTES });
    dirOf.set(store, dir);
    return store;
  },
  async (old) => {
    const dir = dirOf.get(old as FileArtifactStore)!;
    await old.close();
    const store = new FileArtifactStore({ dataDir: dir, maxArtifactBytes: MAX_ARTIFACT_BYTES });
    dirOf.set(store, dir);
    return store;
  },
);

describe('FileArtifactStore with a large artifact', () => {
  it('keeps memory flat while 64 MiB stream through in 256 KiB chunks', async () => {
    const store = new FileArtifactStore({ dataDir: dataDir(), maxArtifactBytes: 1 << 30 });
    const chunk = randomBytes(256 * 1024);
    const chunks = 256;
    const hash = createHash('sha256');
    for (let i = 0; i < chunks; i++) hash.update(chunk);
    const start = artifactOf(new Uint8Array(0), { size: chunk.length * chunks, sha256: hash.digest('hex') });
    await store.start(start);
    const before = process.memoryUsage().rss;
    let peak = before;
    for (let i = 0; i < chunks; i++) {
      await store.write(start.artifact_id, i * chunk.length, chunk);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect((await store.end(start.artifact_id)).size).toBe(64 * 1024 * 1024);
    // Not the 64 MiB it would take to hold the file: a few chunks' worth at most.
    expect(peak - before).toBeLessThan(32 * 1024 * 1024);
    await store.close();
  });
});
