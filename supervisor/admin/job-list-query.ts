// The query of `GET /v1/jobs` (PROTOCOL.md section 7): `state`, `node_id`, `priority`, `limit`
// (default 100, at most 1,000) and `cursor`, checked and turned into a store filter. The cursor
// is opaque to clients; it is the `seq` of the last job of the page before, so a page never
// shifts when jobs are submitted meanwhile.
import { MusterError } from '../../protocol/errors.js';
import type { Priority } from '../../protocol/messages.js';
import type { JobListFilter, JobState } from '../store/job-store.js';

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1_000;

const STATES: ReadonlySet<string> = new Set<JobState>(['Queued', 'Assigned', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered']);
const PRIORITIES: ReadonlySet<string> = new Set<Priority>(['Low', 'Normal', 'High', 'Critical']);
const CURSOR = /^[1-9]\d{0,15}$/;

export interface JobListQuery {
  filter: JobListFilter;
  limit: number;
}

/** Throws `invalid_message` (HTTP 400) naming the parameter that is wrong. */
export function parseJobListQuery(query: Record<string, unknown>): JobListQuery {
  const filter: JobListFilter = {};
  const state = single(query, 'state');
  if (state !== undefined) {
    if (!STATES.has(state)) throw invalid('state', `one of ${[...STATES].join(', ')}`);
    filter.state = state as JobState;
  }
  const priority = single(query, 'priority');
  if (priority !== undefined) {
    if (!PRIORITIES.has(priority)) throw invalid('priority', `one of ${[...PRIORITIES].join(', ')}`);
    filter.priority = priority as Priority;
  }
  const nodeId = single(query, 'node_id');
  if (nodeId !== undefined) filter.node_id = nodeId;
  const cursor = single(query, 'cursor');
  if (cursor !== undefined) {
    if (!CURSOR.test(cursor)) throw invalid('cursor', 'a next_cursor from an earlier page');
    filter.before_seq = Number(cursor);
  }
  const limitText = single(query, 'limit');
  let limit = DEFAULT_LIST_LIMIT;
  if (limitText !== undefined) {
    limit = /^\d{1,5}$/.test(limitText) ? Number(limitText) : NaN;
    if (!(limit >= 1 && limit <= MAX_LIST_LIMIT)) throw invalid('limit', `an integer from 1 to ${MAX_LIST_LIMIT}`);
  }
  return { filter, limit };
}

/** The cursor that asks for the page after the one ending with `seq`. */
export function cursorAfter(seq: number): string {
  return String(seq);
}

function single(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw invalid(name, 'given once');
  return value;
}

function invalid(field: string, what: string): MusterError {
  return new MusterError('invalid_message', `${field}: must be ${what}`, { field });
}
