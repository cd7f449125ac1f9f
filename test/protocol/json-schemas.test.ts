// The published JSON Schemas (docs/schemas/): the committed files are what `npm run schemas`
// writes from protocol/messages.ts today, and a standard JSON Schema validator (Ajv, draft-07)
// accepts every sample message with them and refuses broken ones, as an outside client would.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { messageJsonSchemas, schemaFileText } from '../../protocol/json-schemas.js';
import { MESSAGE_SCHEMAS, type MessageType } from '../../protocol/messages.js';
import { sampleMessages } from './sample-messages.js';

const DIR = fileURLToPath(new URL('../../docs/schemas/', import.meta.url));
const OUT_OF_DATE = 'docs/schemas/ is out of date with protocol/messages.ts: run `npm run schemas` and commit the result';

function committed(name: string): string | undefined {
  try {
    return readFileSync(`${DIR}${name}`, 'utf8');
  } catch {
    return undefined;
  }
}

describe('docs/schemas', () => {
  it('holds exactly what `npm run schemas` writes', () => {
    const generated = messageJsonSchemas();
    const onDisk = readdirSync(DIR).filter((n) => n.endsWith('.json')).sort();
    expect(onDisk, OUT_OF_DATE).toEqual([...generated.keys()].sort());
    for (const [name, schema] of generated) expect(committed(name), `${name}: ${OUT_OF_DATE}`).toBe(schemaFileText(schema));
  });

  it('has one schema per message type, with its $id and title', () => {
    const generated = messageJsonSchemas();
    for (const type of Object.keys(MESSAGE_SCHEMAS)) {
      expect(generated.get(`${type}.json`)).toMatchObject({ $id: `urn:muster:protocol:v1:${type}`, title: type });
    }
  });

  it('accepts every sample message and refuses broken ones, with a standard validator', () => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    // Compiled once each: Ajv keeps schemas by $id.
    const validators = new Map<string, ReturnType<Ajv['compile']>>();
    const compile = (name: string) => {
      const known = validators.get(name) ?? ajv.compile(JSON.parse(committed(name) ?? '{}') as object);
      validators.set(name, known);
      return known;
    };
    const samples = sampleMessages();
    for (const type of Object.keys(MESSAGE_SCHEMAS) as MessageType[]) {
      const validate = compile(`${type}.json`);
      const sample = samples[type];
      expect(validate(sample), `${type}: ${JSON.stringify(validate.errors)}`).toBe(true);
      // Unknown fields are ignored (section 2), at every level.
      expect(validate({ ...sample, extra: 1, data: { ...sample.data, extra: 'x' } }), type).toBe(true);
      expect(validate({ ...sample, type: 'Other' }), `${type} with another type`).toBe(false);
      expect(validate({ type }), `${type} without data`).toBe(false);
      expect(validate({ ...sample, id: '' }), `${type} with an empty id`).toBe(false);
    }
    const heartbeat = compile('Heartbeat.json');
    const { status: _status, ...noStatus } = samples.Heartbeat.data;
    expect(heartbeat({ ...samples.Heartbeat, data: noStatus })).toBe(false);
    expect(heartbeat({ ...samples.Heartbeat, data: { ...samples.Heartbeat.data, status: 'Sleeping' } })).toBe(false);
    const envelope = compile('envelope.json');
    expect(envelope(samples.JobAccepted)).toBe(true);
    expect(envelope({ type: 'Nope', data: {} })).toBe(false);
  });
});
