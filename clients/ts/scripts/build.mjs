// Builds the package: `tsc` emits dist/ (ESM + .d.ts, one file per module,
// what `import 'herald-client'` loads), and esbuild writes one minified
// bundle of the whole client (dist/herald.min.js) and of the shared worker
// (dist/worker.min.js) for pages without a bundler. Prints the bundle's
// minified and gzipped size. Reproducible: same sources, same bytes.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
  stdio: 'inherit',
});

export const bundleOptions = {
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022'],
  platform: 'browser',
  legalComments: 'none',
  logLevel: 'warning',
};

for (const [entry, out] of [
  ['src/index.ts', 'dist/herald.min.js'],
  ['src/worker.ts', 'dist/worker.min.js'],
]) {
  await esbuild.build({ ...bundleOptions, entryPoints: [join(root, entry)], outfile: join(root, out) });
  const bytes = readFileSync(join(root, out));
  console.log(`${out}: ${bytes.length} bytes minified, ${gzipSync(bytes, { level: 9 }).length} bytes gzipped`);
}
