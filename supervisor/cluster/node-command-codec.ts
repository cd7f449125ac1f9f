// Node commands and their replies on the wire (JSON), checked field by field on the way in:
// a replica acts on a command only when it is exactly one of the five kinds.
import type { NodeCommand, NodeCommandReply, NodeCommandRequest } from './node-commands.js';
import { parseJsonObject } from './json-object.js';

/** Far above a real command (a few ids): a larger one is refused before it is parsed. */
export const MAX_COMMAND_BYTES = 8_192;
const MAX_ID_CHARS = 128;
const MAX_REASON_CHARS = 1_024;

const encoder = new TextEncoder();

export function encodeJson(value: NodeCommandRequest | NodeCommandReply): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** The request in `data`, or why it is not one. */
export function decodeRequest(data: Uint8Array): { request: NodeCommandRequest } | { problem: string } {
  const value = parseJsonObject(data, MAX_COMMAND_BYTES);
  if (value === undefined) return { problem: 'not UTF-8 JSON of at most 8 KiB' };
  const from = value.from;
  const command = nodeCommand(value.command);
  if (!isId(from)) return { problem: 'no valid `from` replica' };
  if (command === undefined) return { problem: 'not an assign, cancel, drain, undrain or release command' };
  return { request: { from, command } };
}

/** The reply in `data`, or undefined when it is not one. */
export function decodeReply(data: Uint8Array): NodeCommandReply | undefined {
  const v = parseJsonObject(data, MAX_COMMAND_BYTES);
  if (v === undefined) return undefined;
  if (v.status === 'ok') return { status: 'ok' };
  if ((v.status === 'not_owner' || v.status === 'error') && isText(v.reason, MAX_REASON_CHARS)) return { status: v.status, reason: v.reason };
  return undefined;
}

function nodeCommand(v: unknown): NodeCommand | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  switch (o.kind) {
    case 'assign':
      return isId(o.node_id) && isId(o.job_id) && isAttempt(o.attempt) ? { kind: 'assign', node_id: o.node_id, job_id: o.job_id, attempt: o.attempt } : undefined;
    case 'cancel': {
      if (!isId(o.job_id) || !isAttempt(o.attempt) || (o.reason !== undefined && !isText(o.reason, MAX_REASON_CHARS))) return undefined;
      const command: NodeCommand = { kind: 'cancel', job_id: o.job_id, attempt: o.attempt };
      if (o.reason !== undefined) command.reason = o.reason;
      return command;
    }
    case 'drain':
    case 'undrain':
      return isId(o.node_id) ? { kind: o.kind, node_id: o.node_id } : undefined;
    case 'release':
      return isId(o.node_id) && isId(o.to_replica) ? { kind: 'release', node_id: o.node_id, to_replica: o.to_replica } : undefined;
    default:
      return undefined;
  }
}


function isId(v: unknown): v is string {
  return isText(v, MAX_ID_CHARS) && v.length > 0;
}

function isText(v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length <= max;
}

function isAttempt(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 1;
}
