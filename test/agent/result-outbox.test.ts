import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResultOutbox, type OutboxEntry } from '../../agent/result-outbox.js';

let workDir: string;
beforeEach(() => {
  workDir = mkdtempSync(join(os.tmpdir(), 'muster-outbox-'));
});
afterEach(() => {
  rmSync(workDir, { recursive: true, force: true });
});

function entry(jobId: string, attempt = 1, completedAt = '2025-01-01T00:00:00.000Z'): OutboxEntry {
  return {
    result: {
      job_id: jobId,
      attempt,
      node_id: randomUUID(),
      result: {
        status: 'Completed',
        exit_code: 0,
        stdout: 'hi\n',
        stderr: '',
        artifacts: [],
        started_at: completedAt,
        completed_at: completedAt,
      },
      metrics: { duration_ms: 1, cpu_time_ms: 0, memory_peak_mb: 0 },
    },
    traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01',
  };
}

describe('ResultOutbox', () => {
  it('persists results so that a new agent process reloads them, oldest first', () => {
    const a = randomUUID();
    const b = randomUUID();
    const later = entry(b, 1, '2025-01-02T00:00:00.000Z');
    const earlier = entry(a, 2, '2025-01-01T00:00:00.000Z');
    const first = new ResultOutbox(workDir);
    first.add(later);
    first.add(earlier);
    const reloaded = new ResultOutbox(workDir);
    expect(reloaded.pending()).toEqual([earlier, later]);
    expect(reloaded.unacked().sort()).toEqual([a, b].sort());
  });

  it('forgets a result on its ack, in memory and on disk', () => {
    const id = randomUUID();
    const box = new ResultOutbox(workDir);
    box.add(entry(id, 1));
    box.add(entry(id, 2));
    expect(box.ack(id, 1)).toBe(true);
    expect(box.ack(id, 1)).toBe(false);
    expect(box.pending().map((e) => e.result.attempt)).toEqual([2]);
    expect(new ResultOutbox(workDir).pending().map((e) => e.result.attempt)).toEqual([2]);
    box.ack(id, 2);
    expect(box.unacked()).toEqual([]);
    expect(readdirSync(join(workDir, '.outbox'))).toEqual([]);
  });

  it('sets an unreadable file aside instead of failing to start', () => {
    const box = new ResultOutbox(workDir);
    box.add(entry(randomUUID()));
    writeFileSync(join(workDir, '.outbox', 'broken.json'), '{not json');
    const reloaded = new ResultOutbox(workDir);
    expect(reloaded.size).toBe(1);
    expect(readdirSync(join(workDir, '.outbox'))).toContain('broken.json.bad');
  });

  it('tells which held result an envelope id was last sent as, and forgets it on ack or resend', () => {
    const box = new ResultOutbox(workDir);
    const a = entry(randomUUID());
    box.add(a);
    box.markSent(a.result.job_id, 1, 1_000, 'n-1');
    expect(box.sentAs('n-1')).toEqual(a);
    box.markSent(a.result.job_id, 1, 2_000, 'n-2');
    expect(box.sentAs('n-1')).toBeUndefined();
    expect(box.sentAs('n-2')).toEqual(a);
    box.ack(a.result.job_id, 1);
    expect(box.sentAs('n-2')).toBeUndefined();
    // Never sent as anything: nothing.
    box.markSent(randomUUID(), 1, 3_000, 'n-3');
    expect(box.sentAs('n-3')).toBeUndefined();
  });

  it('names as due for a resend the results never sent or sent an interval ago, and none once acked', () => {
    const box = new ResultOutbox(workDir);
    const a = entry(randomUUID());
    const b = entry(randomUUID());
    box.add(a);
    box.add(b);
    box.markSent(a.result.job_id, 1, 1_000);
    expect(box.dueForResend(1_500, 1_000)).toEqual([b]);
    box.markSent(b.result.job_id, 1, 1_500);
    expect(box.dueForResend(2_000, 1_000)).toEqual([a]);
    box.ack(a.result.job_id, 1);
    expect(box.dueForResend(10_000, 1_000)).toEqual([b]);
  });
});
