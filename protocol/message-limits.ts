// How large a body of each message type may be, and how many items (map entries and array
// elements) it may hold, so that a receiver can refuse an abusive frame before it decodes it
// (body-scan.ts): decoding costs time in proportion to the items, and a Heartbeat needs a few
// hundred bytes, not the `max_frame_bytes` a log chunk or a job may need.
// The limits sit far above what the schemas' bounds (messages.ts) let a valid message reach,
// and far below `max_frame_bytes` where a type's content is small.
import { BATCH_MAX, type MessageType } from './messages.js';

export interface BodyLimit {
  /** Bytes of the plaintext body; undefined: only `max_frame_bytes` applies. */
  bytes: number | undefined;
  /** Map entries plus array elements, at every depth. */
  items: number;
}

/** Nesting of maps and arrays: a valid message nests 5 deep at most (envelope, data, capabilities, max_resources). */
export const MAX_DEPTH = 16;

const KiB = 1024;
/** The most items any one type may hold (a JobAssignment's). */
const LARGEST_ITEMS = 8192;
/** Fixed fields only (ids, numbers, a status), plus the spare fields a newer peer may add. */
const SMALL: BodyLimit = { bytes: 4 * KiB, items: 256 };
/** One reason of at most REASON_MAX characters (3 bytes each in UTF-8 at worst), and fixed fields. */
const WITH_REASON: BodyLimit = { bytes: 8 * KiB, items: 256 };
/** A token of at most TOKEN_MAX characters, and fixed fields. */
const WITH_TOKEN: BodyLimit = { bytes: 16 * KiB, items: 256 };

export const BODY_LIMITS: Record<MessageType, BodyLimit> = {
  // Tags (64 × 384 characters), four lists of 32 names, a resume of 2 × 1,024 ids, a token: ~210 KiB at worst.
  RegisterNode: { bytes: 256 * KiB, items: 4096 },
  Heartbeat: SMALL,
  JobAccepted: SMALL,
  JobRejected: WITH_REASON,
  // Log text and results are as large as a frame; their items are few (artifacts: at most 1,024).
  LogChunk: { bytes: undefined, items: 256 },
  // Up to 1,024 artifacts of 5 items each.
  JobResult: { bytes: undefined, items: 8192 },
  Deregister: WITH_REASON,
  // A name of up to PATH_MAX characters (3 bytes each at worst), and fixed fields.
  ArtifactStart: { bytes: 16 * KiB, items: 256 },
  // 256 KiB of file bytes, base64 in JSON (a third more), and fixed fields.
  ArtifactChunk: { bytes: 352 * KiB, items: 256 },
  ArtifactEnd: SMALL,

  RegisterAck: WITH_TOKEN,
  // Up to 4,096 arguments and three maps of 1,024 entries.
  JobAssignment: { bytes: undefined, items: LARGEST_ITEMS },
  JobResultAck: SMALL,
  CancelJob: WITH_REASON,
  Drain: SMALL,
  Undrain: SMALL,
  Shutdown: WITH_REASON,
  TokenRefresh: WITH_TOKEN,
  Configure: SMALL,
  LogResync: SMALL,
  ArtifactAck: SMALL,
  Error: { bytes: 16 * KiB, items: 256 },
  // What BATCH_MAX frames of the largest type could hold: each envelope is then held to its own
  // type's limits after decoding (protocol/batch.ts), as its own frame would be by the walk.
  Batch: { bytes: undefined, items: (BATCH_MAX + 1) * LARGEST_ITEMS },
};

/**
 * A body whose type is unknown, or not found before the items ran out: as many items as the
 * largest type may hold. A type this version does not know is then answered `unknown_type`.
 */
export const ANY_TYPE_LIMIT: BodyLimit = { bytes: undefined, items: LARGEST_ITEMS };

/** The limit of `type`'s body; a Batch's only where `batches` (the session turned `batch` on), else it is any unknown type's. */
export function bodyLimitOf(type: string | undefined, batches = false): BodyLimit {
  if (type === 'Batch' && !batches) return ANY_TYPE_LIMIT;
  return type !== undefined && Object.hasOwn(BODY_LIMITS, type) ? BODY_LIMITS[type as MessageType] : ANY_TYPE_LIMIT;
}
