// What a test runs to start `muster` or a TypeScript file of this checkout in a process of its
// own: the copy compiled for this run by test/compile-checkout.ts (the globalSetup), which
// starts without tsx, or, where no compiled copy was provided (a run without the globalSetup),
// the sources themselves through tsx, as `bin/muster` runs them.
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The real `bin/muster`, tsx and all: for the tests that are about the script itself. */
export const REAL_BIN = join(ROOT, 'bin', 'muster');

const compiled: string | undefined = inject('compiledCheckout');

/** The `muster` executable the tests spawn (`spawn(MUSTER_BIN, args)`): the compiled copy when there is one. */
export const MUSTER_BIN = compiled === undefined ? REAL_BIN : join(compiled, 'bin', 'muster');

/**
 * Node arguments that run `file` (a `.ts` file of this checkout, outside the test files), for
 * `spawn(process.execPath, [...nodeArgs(file), ...more])`: its compiled copy, or the file through tsx.
 */
export function nodeArgs(file: string): string[] {
  if (compiled === undefined) return ['--import', 'tsx', file];
  const path = relative(ROOT, file);
  if (path.startsWith('..') || !path.endsWith('.ts') || path.endsWith('.test.ts')) throw new Error(`not a compiled source of this checkout: ${file}`);
  return [join(compiled, `${path.slice(0, -'.ts'.length)}.js`)];
}
