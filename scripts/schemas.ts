// `npm run schemas`: writes docs/schemas/ from the TypeBox schemas in protocol/messages.ts,
// one JSON Schema per message (protocol/json-schemas.ts), and removes files no message has
// any more. test/protocol/json-schemas.test.ts fails when the committed files are out of date.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { messageJsonSchemas, schemaFileText } from '../protocol/json-schemas.js';

export const SCHEMAS_DIR = fileURLToPath(new URL('../docs/schemas/', import.meta.url));

function main(): void {
  mkdirSync(SCHEMAS_DIR, { recursive: true });
  const files = messageJsonSchemas();
  for (const name of readdirSync(SCHEMAS_DIR)) {
    if (name.endsWith('.json') && !files.has(name)) rmSync(join(SCHEMAS_DIR, name));
  }
  for (const [name, schema] of files) writeFileSync(join(SCHEMAS_DIR, name), schemaFileText(schema));
  process.stdout.write(`wrote ${files.size} schemas to docs/schemas/\n`);
}

main();
