// The ArtifactStore seam (PROTOCOL.md section 8, `artifacts`): files a node uploads for an attempt
// of a job, in chunks, resumable after a cut connection from what the store says it has
// (`received`), verified against the node's sha256 at the end. The embedded plane keeps them in
// the data directory (file-artifact-store.ts); a cluster keeps them in JetStream's object store.
// Every implementation passes test/supervisor/artifacts/artifact-store-contract.ts.
import type { Readable } from 'node:stream';

/** What `ArtifactStart` announces. */
export interface ArtifactStart {
  job_id: string;
  attempt: number;
  /** A UUID the node picks: the same one when it resumes the upload. */
  artifact_id: string;
  name: string;
  size: number;
  /** Lowercase hex SHA-256 of the whole file. */
  sha256: string;
  content_type?: string;
}

/** A completed artifact, as `GET /v1/jobs/{id}/artifacts` lists it. */
export interface ArtifactRecord {
  artifact_id: string;
  job_id: string;
  attempt: number;
  name: string;
  size: number;
  sha256: string;
  content_type?: string;
  /** RFC 3339. */
  stored_at: string;
}

/** A byte range of a stored artifact, inclusive of `start`, exclusive of `end`. */
export interface ByteRange {
  start: number;
  end: number;
}

/** What `sweep` removes: uploads idle since before `idleBefore` whose attempt may no longer resume. */
export interface SweepRule {
  /**
   * Milliseconds since the epoch: an upload last advanced (started, or a chunk stored) before it
   * is idle. The plane passes now minus `artifactAbandonAfterMs`.
   */
  idleBefore: number;
  /**
   * Whether the job's attempt may still resume its uploads (PROTOCOL.md section 8: the plane keeps
   * an upload of the current attempt across a dropped connection). An idle upload of such an
   * attempt is kept however long it has been idle; any other is abandoned.
   */
  resumable(jobId: string, attempt: number): Promise<boolean>;
}

/**
 * Uploads are keyed by `artifact_id`. Every refusal is a MusterError `artifact_rejected` whose
 * `field` names what is wrong (`data.size`, `data.name`, `data.sha256`, `data.artifact_id`), and
 * what was stored of that upload is dropped.
 */
export interface ArtifactStore {
  /**
   * Begins an upload, or resumes it (same `artifact_id`, same name, size and digest): resolves
   * with how many bytes are already stored. A different upload of the same name in the same
   * attempt, or a size over the store's limit, is refused.
   */
  start(start: ArtifactStart): Promise<{ received: number }>;
  /**
   * Stores `data` at `offset` when that is where the upload stands; otherwise stores nothing.
   * Resolves with where the upload stands afterwards. Bytes past `size` are refused.
   */
  write(artifactId: string, offset: number, data: Uint8Array): Promise<{ received: number }>;
  /** All `size` bytes arrived and match `sha256`: the artifact is complete. Otherwise refused (and dropped). */
  end(artifactId: string): Promise<ArtifactRecord>;
  /** Drops an upload that will not be completed (its attempt ended); nothing when unknown. */
  drop(artifactId: string): Promise<void>;
  /**
   * Removes abandoned uploads (`rule`): their bytes and their state, so that a later Start of the
   * same artifact begins afresh. Completed artifacts are never touched. Safe to run in several
   * processes on the same store at once. Resolves with how many uploads it found abandoned and
   * removed (finishing a removal another sweep began and left half-way is not counted).
   */
  sweep(rule: SweepRule): Promise<number>;
  /** The job's completed artifacts, every attempt, oldest first. */
  list(jobId: string): Promise<ArtifactRecord[]>;
  /**
   * The bytes of the job's artifact `name`, of `attempt` or of the last attempt that completed
   * one by that name; `range` within its size. Undefined when there is none.
   */
  read(jobId: string, name: string, options?: { attempt?: number; range?: ByteRange }): Promise<{ record: ArtifactRecord; body: Readable } | undefined>;
  close(): Promise<void>;
}
