// `job submit --wait` over a long wait: its status rounds leave nothing behind on the signal that
// stops them (one abort listener per round made Node print a leak warning on stderr after
// eleven rounds, in the middle of the job's output).
import { afterEach, describe, expect, it } from 'vitest';
import type { ApiClient } from '../../cli/api-client.js';
import { waitForJob } from '../../cli/job-wait.js';
import type { JobAnswer } from '../../supervisor/admin/wire-types.js';

const RUNNING = {
  job_id: 'j-1',
  state: 'Running',
  attempt: 1,
  node_id: 'n-1',
  result: { exit_code: 0 },
} as unknown as JobAnswer;

const warnings: Error[] = [];
const onWarning = (w: Error): number => warnings.push(w);

afterEach(() => {
  process.off('warning', onWarning);
});

describe('waitForJob', () => {
  it('asks the status many times over one wait without piling listeners on its stop signal', async () => {
    process.on('warning', onWarning);
    let rounds = 0;
    let ended = false;
    let endFollow: () => void = () => undefined;
    const client = {
      get: async (path: string) => {
        if (!path.startsWith('/v1/jobs/')) return { hostname: 'runner-7' };
        if (ended) return { ...RUNNING, state: 'Completed' };
        if (++rounds === 30) endFollow();
        return RUNNING;
      },
      retrying: <T>(fn: () => Promise<T>) => fn(),
      followLogs: () =>
        new Promise((resolve) => {
          endFollow = () => {
            ended = true;
            resolve({});
          };
        }),
    } as unknown as ApiClient;
    const code = await waitForJob(client, 'j-1', { status: true, statusEveryMs: 1, cancelOnInterrupt: false, writeChunk: () => undefined });
    expect(code).toBe(0);
    expect(rounds).toBeGreaterThanOrEqual(30);
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });
});
