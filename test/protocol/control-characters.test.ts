// Names, tags and identifiers hold no control character (issue 8 item 9): a hostname such as
// "\x1b]0;pwned\x07\x1b[2J" or one with a newline would reach `muster nodes` and logs raw, so it
// is `invalid_message` with the field's path; free text meant for a process (a command, an
// environment value) may hold newlines and tabs, never NUL.
import { describe, expect, it } from 'vitest';
import type { MusterError } from '../../protocol/errors.js';
import type { MessageType } from '../../protocol/messages.js';
import { validateNodeMessage, validatePlaneMessage } from '../../protocol/validator.js';
import { isNodeMessageType, sampleMessages } from './sample-messages.js';

type Json = Record<string, unknown>;

function withValue(type: MessageType, path: string, value: unknown): Json {
  const msg = structuredClone(sampleMessages()[type]) as unknown as Json;
  const keys = path.split('.');
  const parent = keys.slice(0, -1).reduce<Json>((node, key) => node[key] as Json, msg);
  parent[keys.at(-1)!] = value;
  return msg;
}

function validate(msg: Json): unknown {
  return isNodeMessageType(msg.type as MessageType) ? validateNodeMessage(msg) : validatePlaneMessage(msg);
}

function refusedField(msg: Json): string | undefined {
  try {
    validate(msg);
  } catch (err) {
    expect((err as MusterError).code).toBe('invalid_message');
    return (err as MusterError).field;
  }
  return undefined;
}

const HOSTILE = ['\x1b]0;pwned\x07\x1b[2J', 'runner\nforged-row', 'tab\there', 'nul\u0000', 'del\u007f', 'csi\u009b2J'];

describe('control characters', () => {
  it('are refused in every name and identifier, naming the field', () => {
    const fields: [MessageType, string][] = [
      ['RegisterNode', 'data.node_info.hostname'],
      ['RegisterNode', 'data.node_info.ip_address'],
      ['RegisterNode', 'data.node_info.node_type'],
      ['RegisterNode', 'data.node_info.version'],
      ['RegisterNode', 'data.node_info.platform'],
      ['RegisterNode', 'data.node_info.architecture'],
      ['RegisterNode', 'data.node_info.tags.region'],
      ['RegisterNode', 'data.capabilities.runner_types.0'],
      ['RegisterNode', 'data.capabilities.supported_job_types.0'],
      ['RegisterNode', 'data.capabilities.features.0'],
      ['RegisterNode', 'data.capabilities.protocols.0'],
      ['JobAssignment', 'data.job.name'],
      ['JobAssignment', 'data.job.image'],
      ['JobAssignment', 'data.execution_context.workspace_id'],
      ['JobAssignment', 'data.execution_context.pipeline_id'],
      ['JobAssignment', 'data.execution_context.git_ref'],
      ['JobResult', 'data.result.artifacts.0'],
      ['RegisterAck', 'data.control_plane_id'],
    ];
    for (const [type, path] of fields) {
      for (const bad of HOSTILE) expect({ path, bad, field: refusedField(withValue(type, path, bad)) }).toEqual({ path, bad, field: path });
    }
  });

  it('are refused in tag keys and environment keys, which are field names', () => {
    const tags = withValue('RegisterNode', 'data.node_info.tags', { 'a\x1b[2J': 'v' });
    expect(refusedField(tags)).toBe('data.node_info.tags.a\x1b[2J');
    const env = withValue('JobAssignment', 'data.job.environment', { 'A\nB': 'v' });
    expect(refusedField(env)).toBe('data.job.environment.A\nB');
  });

  it('are taken in a command and an environment value (a script has newlines), but NUL is not', () => {
    expect(refusedField(withValue('JobAssignment', 'data.job.command', ['sh', '-c', 'echo a\n\techo b']))).toBeUndefined();
    expect(refusedField(withValue('JobAssignment', 'data.job.environment', { KEY: '-----BEGIN KEY-----\nabc\n' }))).toBeUndefined();
    expect(refusedField(withValue('JobAssignment', 'data.job.command', ['echo', 'a\u0000b']))).toBe('data.job.command.1');
  });

  it('takes printable non-ASCII names', () => {
    expect(refusedField(withValue('RegisterNode', 'data.node_info.hostname', 'bücher-ü.例え.test'))).toBeUndefined();
  });
});
