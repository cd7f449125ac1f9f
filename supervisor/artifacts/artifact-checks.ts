// What every ArtifactStore checks alike (artifact-store.ts): the ids and digest an
// `ArtifactStart` must carry, the size limit, whether a repeated Start is the same upload, and
// the one refusal (`artifact_rejected` with the field at fault).
import { MusterError } from '../../protocol/errors.js';
import type { ArtifactRecord, ArtifactStart } from './artifact-store.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SHA256 = /^[0-9a-f]{64}$/;

/** Refuses a Start whose ids, digest or size a store must not take (`maxBytes`: `max_artifact_bytes`). */
export function checkStart(start: ArtifactStart, maxBytes: number): void {
  if (!UUID.test(start.artifact_id)) throw reject('data.artifact_id', 'artifact_id must be a lowercase UUID');
  if (!UUID.test(start.job_id)) throw reject('data.job_id', 'job_id must be a lowercase UUID');
  if (!SHA256.test(start.sha256)) throw reject('data.sha256', 'sha256 must be 64 lowercase hex digits');
  if (!Number.isSafeInteger(start.size) || start.size < 0) throw reject('data.size', 'size must be a whole number of bytes');
  if (start.size > maxBytes) throw reject('data.size', `artifact of ${start.size} bytes is over max_artifact_bytes (${maxBytes})`);
}

/** A repeated Start resumes the upload only when it announces the same file for the same attempt. */
export function sameUpload(a: ArtifactStart, b: ArtifactStart): boolean {
  return a.job_id === b.job_id && a.attempt === b.attempt && a.name === b.name && a.size === b.size && a.sha256 === b.sha256;
}

export function reject(field: string, message: string): MusterError {
  return new MusterError('artifact_rejected', message, { field });
}

/** The record of a completed upload, as `list` gives it. */
export function recordOf(start: ArtifactStart, storedAt: Date): ArtifactRecord {
  return {
    artifact_id: start.artifact_id,
    job_id: start.job_id,
    attempt: start.attempt,
    name: start.name,
    size: start.size,
    sha256: start.sha256,
    ...(start.content_type === undefined ? {} : { content_type: start.content_type }),
    stored_at: storedAt.toISOString(),
  };
}
