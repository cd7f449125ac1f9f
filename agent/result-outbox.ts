// Results waiting for their JobResultAck (PROTOCOL.md section 4, rule 4: at-least-once).
// Each is kept in memory and as one JSON file under `<work-dir>/.outbox/`, written
// before it is first sent, so that an agent that restarts still delivers it.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { MessageData } from '../protocol/messages.js';

export type JobResultData = MessageData<'JobResult'>;

/** A stored result and the trace it belongs to. */
export interface OutboxEntry {
  result: JobResultData;
  traceparent?: string;
}

export class ResultOutbox {
  private readonly entries = new Map<string, OutboxEntry>();
  // When each result was last sent (ms) and as which envelope id; memory only: after a restart all are due.
  private readonly sent = new Map<string, { at: number; messageId?: string }>();
  // The envelope id of each result's last send, back to its key: an `Error` names it in `reply_to`.
  private readonly byMessageId = new Map<string, string>();
  private readonly dir: string;

  /** Opens (creating if needed) `<workDir>/.outbox` and loads what an earlier run left there. */
  constructor(
    workDir: string,
    private readonly logger?: Logger,
  ) {
    this.dir = join(workDir, '.outbox');
    mkdirSync(this.dir, { recursive: true });
    this.load();
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Keeps a result in memory and on disk; a repeat of the same attempt replaces it.
   * A failed write (disk full) is logged and the result still kept in memory: it is
   * delivered unless the agent also restarts. Returns whether it was persisted.
   */
  add(entry: OutboxEntry): boolean {
    this.entries.set(key(entry.result.job_id, entry.result.attempt), entry);
    const file = this.fileOf(entry.result.job_id, entry.result.attempt);
    try {
      // Write then rename: a crash mid-write leaves the old file or none, never half a file.
      writeFileSync(`${file}.tmp`, JSON.stringify(entry));
      renameSync(`${file}.tmp`, file);
      return true;
    } catch (err) {
      this.logger?.error({ err, job_id: entry.result.job_id }, 'cannot persist job result; kept in memory only');
      return false;
    }
  }

  /**
   * The control plane stored it, or said it never can (from this node): forget it.
   * False when it was not held.
   */
  ack(jobId: string, attempt: number): boolean {
    const k = key(jobId, attempt);
    this.forgetSend(k);
    if (!this.entries.delete(k)) return false;
    rmSync(this.fileOf(jobId, attempt), { force: true });
    return true;
  }

  has(jobId: string, attempt: number): boolean {
    return this.entries.has(key(jobId, attempt));
  }

  /** Every unacked result, oldest first. */
  pending(): OutboxEntry[] {
    return [...this.entries.values()];
  }

  /** The result was just sent at `now` (ms), as the envelope `messageId` when there is one. */
  markSent(jobId: string, attempt: number, now: number, messageId?: string): void {
    const k = key(jobId, attempt);
    if (!this.entries.has(k)) return;
    // Only the last send is answered on a live connection: one id per result keeps this bounded.
    this.forgetSend(k);
    this.sent.set(k, messageId === undefined ? { at: now } : { at: now, messageId });
    if (messageId !== undefined) this.byMessageId.set(messageId, k);
  }

  /** The held result last sent as envelope `messageId`, if any: what an `Error`'s `reply_to` is about. */
  sentAs(messageId: string): OutboxEntry | undefined {
    const k = this.byMessageId.get(messageId);
    return k === undefined ? undefined : this.entries.get(k);
  }

  /** Unacked results not sent within the last `intervalMs` (or never), oldest first. */
  dueForResend(now: number, intervalMs: number): OutboxEntry[] {
    return this.pending().filter((e) => now - (this.sent.get(key(e.result.job_id, e.result.attempt))?.at ?? -Infinity) >= intervalMs);
  }

  /** Job ids with an unacked result, for `resume.unacked_results`. */
  unacked(): string[] {
    return [...new Set([...this.entries.values()].map((e) => e.result.job_id))];
  }

  private forgetSend(k: string): void {
    const messageId = this.sent.get(k)?.messageId;
    if (messageId !== undefined) this.byMessageId.delete(messageId);
    this.sent.delete(k);
  }

  private fileOf(jobId: string, attempt: number): string {
    return join(this.dir, `${jobId}-${attempt}.json`);
  }

  private load(): void {
    const loaded: OutboxEntry[] = [];
    for (const name of readdirSync(this.dir)) {
      const file = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const entry: unknown = JSON.parse(readFileSync(file, 'utf8'));
        if (!isEntry(entry)) throw new Error('not a stored JobResult');
        loaded.push(entry);
      } catch (err) {
        // Keep the file for a human to look at, but out of the way of the next load.
        this.logger?.error({ err, file }, 'unreadable outbox entry set aside');
        renameSync(file, `${file}.bad`);
      }
    }
    loaded.sort((a, b) => a.result.result.completed_at.localeCompare(b.result.result.completed_at));
    for (const entry of loaded) this.entries.set(key(entry.result.job_id, entry.result.attempt), entry);
  }
}

function key(jobId: string, attempt: number): string {
  return `${jobId}:${attempt}`;
}

// Enough of a shape check that a resend cannot crash the agent; the control plane validates the rest.
function isEntry(value: unknown): value is OutboxEntry {
  if (typeof value !== 'object' || value === null) return false;
  const result = (value as { result?: unknown }).result;
  if (typeof result !== 'object' || result === null) return false;
  const r = result as Record<string, unknown>;
  const outcome = r.result as Record<string, unknown> | null | undefined;
  return (
    typeof r.job_id === 'string' &&
    typeof r.attempt === 'number' &&
    typeof outcome === 'object' &&
    outcome !== null &&
    typeof outcome.completed_at === 'string'
  );
}
