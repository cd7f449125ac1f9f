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

/** Frame length (codec byte and body, as `max_frame_bytes` counts it) of the largest JobAssignment `job` can be sent in. */
export function assignmentFrameBytes(job: AssignedJob): number {
  const envelope = { type: 'JobAssignment', data: { job_id: ANY_JOB_ID, attempt: Number.MAX_SAFE_INTEGER, ...job } };
  const body = Math.max(encodeBody(CODEC_JSON, envelope).length, encodeBody(CODEC_MSGPACK, envelope).length);
  return 1 + body + ENCRYPTION_OVERHEAD_BYTES;
}
