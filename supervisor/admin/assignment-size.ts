// The largest frame a JobAssignment for a job can take, so that the plane refuses at submit a
// job it could never send (issue 8 item 7): such a job would be refused by every node's frame
// decoder, requeued and sent again, taking its node's connection down each time. The size is
// the worst case over what may vary between sends: either codec, an attempt number of any size,
// a listener with payload encryption.
import { CODEC_JSON, CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import type { MessageData } from '../../protocol/messages.js';
import { ENCRYPTION_OVERHEAD_BYTES } from '../../transports/payload-cipher.js';

/** A job id as long as any (ids are UUIDs, 36 characters). */
const ANY_JOB_ID = '00000000-0000-4000-8000-000000000000';

export type AssignedJob = Omit<MessageData<'JobAssignment'>, 'job_id' | 'attempt'>;

/**
 * MessagePack never takes more than this many times the bytes of the JSON of one value (from
 * JSON: its largest ratio is a float, at least 3 characters in JSON such as `0.5` and 9 bytes
 * in MessagePack; every other value takes no more bytes than its JSON, but for a few header
 * bytes of a string or container past 64 KiB, which its quotes or brackets and commas cover).
 */
const MSGPACK_PER_JSON_BYTE = 3;

/** Frame length (codec byte and body, as `max_frame_bytes` counts it) of the largest JobAssignment `job` can be sent in. */
export function assignmentFrameBytes(job: AssignedJob): number {
  const envelope = assignmentOf(job);
  const body = Math.max(encodeBody(CODEC_JSON, envelope).length, encodeBody(CODEC_MSGPACK, envelope).length);
  return 1 + body + ENCRYPTION_OVERHEAD_BYTES;
}

/**
 * `assignmentFrameBytes(job)` when it may pass `maxFrameBytes`, else undefined: a job far below
 * the limit (every job a batch of noops carries) is told from the length of its JSON alone,
 * without encoding it in MessagePack too.
 */
export function assignmentOverLimit(job: AssignedJob, maxFrameBytes: number): number | undefined {
  const jsonBytes = Buffer.byteLength(JSON.stringify(assignmentOf(job)));
  if (1 + MSGPACK_PER_JSON_BYTE * jsonBytes + ENCRYPTION_OVERHEAD_BYTES <= maxFrameBytes) return undefined;
  const bytes = assignmentFrameBytes(job);
  return bytes > maxFrameBytes ? bytes : undefined;
}

function assignmentOf(job: AssignedJob): { type: 'JobAssignment'; data: MessageData<'JobAssignment'> } {
  return { type: 'JobAssignment', data: { job_id: ANY_JOB_ID, attempt: Number.MAX_SAFE_INTEGER, ...job } };
}
