// The SQLite token store against the TokenStore contract, in a file (beside the job store, as
// the plane keeps it) and in memory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { SqliteTokenStore } from '../../../supervisor/store/sqlite-token-store.js';
import { tokenStoreContract } from './token-store-contract.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-tokens-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;

tokenStoreContract('SqliteTokenStore (file)', () => SqliteTokenStore.open(path.join(dir, `tokens-${++files}.db`)));
tokenStoreContract('SqliteTokenStore (:memory:)', () => SqliteTokenStore.open(':memory:'));
