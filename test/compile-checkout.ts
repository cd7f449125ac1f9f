// Vitest globalSetup: compiles this checkout's TypeScript once per test run into a temp tree, so
// that the hundreds of `muster` processes the tests start load plain JavaScript instead of each
// paying for tsx (its loader hooks cost ~0.5 s of CPU per process even on cached code; the
// compiled CLI starts in ~0.2 s). Built from the working tree on every run, never committed, and
// removed after the run; `bin/muster` itself stays covered by test/cli/bin-script.test.ts.
//
// The tree mirrors the checkout, so every `new URL('../x', import.meta.url)` in the sources still
// finds its file: each `.ts` file (but the test files themselves) becomes a `.js` file beside
// where it was, every other file and folder is a symlink to the original, and `bin/muster` is the
// real script with tsx taken out. The compiler is esbuild, which tsx itself runs, with tsx's
// settings (the tsconfig, this Node as target, names kept), so the code is what tsx would run.
import { build } from 'esbuild';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The compiled tree's root (test/muster-process.ts reads it). */
    compiledCheckout: string;
  }
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Not mirrored: git's own files; node_modules is linked as it is. */
const SKIPPED = new Set(['.git']);

export default async function setup(project: TestProject): Promise<() => void> {
  const tree = mkdtempSync(join(tmpdir(), 'muster-compiled-'));
  try {
    const sources: string[] = [];
    mirror(ROOT, tree, sources);
    await build({
      entryPoints: sources,
      outbase: ROOT,
      outdir: tree,
      format: 'esm',
      platform: 'node',
      target: `node${process.versions.node}`,
      keepNames: true,
      logLevel: 'warning',
    });
    writeBin(tree);
  } catch (err) {
    rmSync(tree, { recursive: true, force: true });
    throw err;
  }
  project.provide('compiledCheckout', tree);
  return () => rmSync(tree, { recursive: true, force: true });
}

/** Links every entry of `from` into `to`, except folders holding TypeScript (recreated) and `.ts` files (collected). */
function mirror(from: string, to: string, sources: string[]): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (SKIPPED.has(entry.name) || (from === ROOT && entry.name === 'bin')) continue;
    if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      // The test files run in vitest, not from here.
      if (!entry.name.endsWith('.test.ts')) sources.push(source);
    } else if (entry.isDirectory() && entry.name !== 'node_modules' && holdsTypeScript(source)) {
      mkdirSync(target);
      mirror(source, target, sources);
    } else {
      symlinkSync(source, target);
    }
  }
}

function holdsTypeScript(dir: string): boolean {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).some((name) => name.endsWith('.ts') && !name.split('/').includes('node_modules'));
}

/** `bin/muster` as it is, but without tsx: its register() becomes a no-op and it imports the compiled `.js`. */
function writeBin(tree: string): void {
  const real = join(ROOT, 'bin', 'muster');
  const text = readFileSync(real, 'utf8');
  const edits: Array<[RegExp, string]> = [
    [/^import \{ register \} from 'tsx\/esm\/api';$/m, 'const register = () => () => undefined;'],
    [/import\('(\.\.\/[^']+)\.ts'\)/g, "import('$1.js')"],
  ];
  let compiled = text;
  for (const [pattern, replacement] of edits) {
    // A changed bin/muster must be looked at here, not run differently from the real one.
    if (!pattern.test(compiled)) throw new Error(`${relative(ROOT, real)} no longer matches ${pattern}: update test/compile-checkout.ts`);
    compiled = compiled.replace(pattern, replacement);
  }
  mkdirSync(join(tree, 'bin'));
  const bin = join(tree, 'bin', 'muster');
  writeFileSync(bin, compiled);
  chmodSync(bin, 0o755);
}
