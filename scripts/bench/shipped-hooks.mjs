// Module resolution hooks for the benchmarks (registered by shipped.mjs): a benchmark imports
// src/**/*.ts, for the types, but runs the compiled modules in dist/, which is what ships. Under
// tsx the source is not what ships: tsx compiles with esbuild's keepNames, which wraps every named
// closure in `__name(fn, "fn")`, an Object.defineProperty per closure created. In give that was
// 10–16 % of the CPU of a new tunnel and 4 KiB of heap per idle tunnel (dictionary-mode property
// stores on ~15 closures). Modules that are not built (src/testing, tests) still load from src.
// BENCH_FROM_SOURCE=1 turns the redirect off (to compare, or to profile the TypeScript itself).
import { statSync } from 'node:fs';

const SRC = new URL('../../src/', import.meta.url).href;
const DIST = new URL('../../dist/', import.meta.url).href;
const FROM_SOURCE = process.env.BENCH_FROM_SOURCE === '1';

const mtime = (url) => {
  try {
    return statSync(new URL(url)).mtimeMs;
  } catch {
    return undefined;
  }
};

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  if (FROM_SOURCE) return resolved;
  if (!resolved.url.startsWith(SRC) || !resolved.url.endsWith('.ts')) return resolved;
  const path = resolved.url.slice(SRC.length, -'.ts'.length);
  const built = `${DIST}${path}.js`;
  const builtAt = mtime(built);
  if (builtAt === undefined) return resolved;
  if (mtime(resolved.url) > builtAt) throw new Error(`dist/${path}.js is older than src/${path}.ts: run \`npm run build\` (\`npm run bench\` does) before a benchmark`);
  return { url: built, format: 'module', shortCircuit: true };
}
