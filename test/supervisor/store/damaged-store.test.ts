// A damaged data directory, through the real `muster serve`: an overwritten, a truncated and a
// quietly damaged muster.db, and a read-only disk. Each ends the plane at start with what is
// wrong and where, and with exit status 65 (EXIT_STORE_UNUSABLE), which deploy/muster.service
// names in RestartPreventExitStatus so that systemd stops restarting it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { storePath } from '../../../supervisor/store/sqlite-database.js';
import { EXIT_STORE_UNUSABLE } from '../../../supervisor/store/store-unusable.js';
import { SqliteJobStore } from '../../../supervisor/store/sqlite-job-store.js';
import { runMuster } from '../../e2e/harness.js';
import { OWNER, newJob } from './job-store-contract.js';

const dirs: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const dir of mounts) execFileSync('umount', [dir]);
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A data directory with a healthy store of a few hundred jobs (many pages) and a secret. */
async function dataDir(root = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-damaged-'))): Promise<string> {
  dirs.push(root);
  const store = SqliteJobStore.open(storePath(root));
  await Promise.all(Array.from({ length: 300 }, () => store.submit(newJob(), OWNER)));
  await store.close();
  const minted = await runMuster(['token', 'create', '--role', 'admin', '--data-dir', root]);
  expect(minted.code, minted.stderr).toBe(0);
  return root;
}

/** `muster serve` on `dir`, expected to refuse to start; its exit status and stderr. */
async function serve(dir: string): Promise<{ code: number; stderr: string }> {
  const run = await runMuster(['serve', '--data-dir', dir, '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--ws', 'off', '--grpc', 'off', '--unix', 'off'], {}, 20_000);
  return { code: run.code, stderr: run.stderr };
}

describe('muster serve on a damaged data directory', () => {
  it('says a file overwritten with garbage is not a database, and where', async () => {
    const dir = await dataDir();
    const db = storePath(dir);
    fs.writeFileSync(db, Buffer.alloc(64 * 1024, 0x5a));
    const run = await serve(dir);
    expect(run.code).toBe(EXIT_STORE_UNUSABLE);
    expect(run.stderr).toContain(`muster: file is not a database: ${db}`);
  }, 60_000);

  it('refuses a truncated file', async () => {
    const dir = await dataDir();
    const db = storePath(dir);
    fs.truncateSync(db, Math.floor(fs.statSync(db).size / 2));
    const run = await serve(dir);
    expect(run.code).toBe(EXIT_STORE_UNUSABLE);
    expect(run.stderr).toMatch(new RegExp(`^muster: database disk image is malformed: ${escape(db)}`, 'm'));
  }, 60_000);

  it('refuses a file whose damaged pages still open (quick_check), rather than take jobs on it', async () => {
    // Opening and reading the header work on this file: only the check finds the damage.
    const dir = await dataDir();
    const db = storePath(dir);
    // Garbage over the middle of one page, leaving the header and the schema intact.
    const fd = fs.openSync(db, 'r+');
    const page = 4096;
    const pages = Math.floor(fs.statSync(db).size / page);
    fs.writeSync(fd, Buffer.alloc(page / 2, 0xa5), 0, page / 2, Math.floor(pages / 2) * page + 100);
    fs.closeSync(fd);
    const run = await serve(dir);
    expect(run.code).toBe(EXIT_STORE_UNUSABLE);
    expect(run.stderr).toMatch(new RegExp(`^muster: database disk image is malformed: ${escape(db)} \\(quick_check: [^*\\n]+\\)$`, 'm'));
  }, 60_000);

  it('says a data directory on a read-only disk cannot be written, and where', async (context) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-ro-'));
    dirs.push(dir);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (err) {
      context.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
    }
    mounts.push(dir);
    await dataDir(dir);
    // Read-only for root too, which file modes are not.
    execFileSync('mount', ['-o', 'remount,ro', dir]);
    const run = await serve(dir);
    expect(run.code).toBe(EXIT_STORE_UNUSABLE);
    expect(run.stderr).toMatch(
      // The first file it writes there: the data directory's lock (store/data-dir-lock.ts), before the store.
      new RegExp(`^muster: .*(readonly|unable to open).*: ${escape(dir)}/[^/\\s]+ \\(its directory must be writable\\)$`, 'm'),
    );
  }, 60_000);

  it('names the status in the systemd unit, so that systemd does not restart in a loop', () => {
    const unit = fs.readFileSync(new URL('../../../deploy/muster.service', import.meta.url), 'utf8');
    expect(unit).toMatch(new RegExp(`^RestartPreventExitStatus=${EXIT_STORE_UNUSABLE}$`, 'm'));
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
