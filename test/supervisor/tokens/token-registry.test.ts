import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../observability/logger.js';
import { SqliteTokenStore } from '../../../supervisor/store/sqlite-token-store.js';
import type { TokenInfo } from '../../../supervisor/store/token-store.js';
import { RECORD_BATCH_MS, TokenRegistry } from '../../../supervisor/tokens/token-registry.js';

const logger = createLogger({ level: 'silent' });

function session(i: number): TokenInfo {
  return { jti: `s-${i}`, role: 'session', sub: `node-${i}`, issued_at: '2026-12-01T00:00:00.000Z', expires_at: '2099-12-01T00:00:00.000Z' };
}

function open(store: SqliteTokenStore): Promise<TokenRegistry> {
  return TokenRegistry.open({ store, logger, onRevoked: () => {}, pollMs: 0 });
}

describe('TokenRegistry.recordSoon', () => {
  const dirs: string[] = [];
  afterEach(() => {
    vi.useRealTimers();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('hands the records of a storm to the store together, a moment later', async () => {
    const store = SqliteTokenStore.open(':memory:');
    const registry = await open(store);
    const recordToken = vi.spyOn(store, 'recordToken');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    for (let i = 0; i < 100; i++) registry.recordSoon(session(i));
    vi.advanceTimersByTime(RECORD_BATCH_MS - 1);
    expect(recordToken).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(recordToken).toHaveBeenCalledTimes(100);
    // Handed over in one turn: one group commit. `list` waits until they are written.
    expect(await registry.list()).toHaveLength(100);
    registry.close();
    await store.close();
  });

  it('lists what is still waiting, and close hands the rest to the store, which writes it as it closes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muster-token-registry-'));
    dirs.push(dir);
    const path = join(dir, 'muster.db');
    const store = SqliteTokenStore.open(path);
    const registry = await open(store);
    registry.recordSoon(session(1));
    expect((await registry.list()).map((t) => t.jti)).toEqual(['s-1']);
    registry.recordSoon(session(2));
    registry.close();
    await store.close();
    const again = SqliteTokenStore.open(path);
    expect((await again.listTokens()).map((t) => t.jti)).toEqual(['s-1', 's-2']);
    await again.close();
  });
});

describe('TokenRegistry polling a store that hears revocations', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads only after the hint moved, or once a reconcile is due', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const store = SqliteTokenStore.open(':memory:');
    let heard = 7;
    const hinted = Object.assign(store, { revocationsHeard: () => heard });
    const revokedSince = vi.spyOn(store, 'revokedSince');
    const registry = await TokenRegistry.open({ store: hinted, logger, onRevoked: () => {}, pollMs: 100, reconcileMs: 10_000 });
    expect(revokedSince).toHaveBeenCalledTimes(1); // the load at open
    await vi.advanceTimersByTimeAsync(5_000);
    expect(revokedSince).toHaveBeenCalledTimes(1);
    heard = 8;
    await vi.advanceTimersByTimeAsync(100);
    expect(revokedSince).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(9_800);
    expect(revokedSince).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(200); // 10 s since the last read: the reconcile
    expect(revokedSince).toHaveBeenCalledTimes(3);
    registry.close();
    await store.close();
  });
});
