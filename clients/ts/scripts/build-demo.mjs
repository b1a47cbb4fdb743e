// Bundles the demo page of `herald serve --dev` (demo/app.ts and the shared
// worker) into crates/herald-cli/assets/demo/, where the binary includes
// them. The bundles are committed so that the page needs only the Rust
// toolchain; `--check` rebuilds into a temporary folder and fails when the
// committed files differ from what the sources give (esbuild's output is
// deterministic).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const assets = join(root, '..', '..', 'crates', 'herald-cli', 'assets', 'demo');
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'herald-demo-')) : assets;

const options = {
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022'],
  platform: 'browser',
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
};
const files = [
  ['demo/app.ts', 'app.js'],
  ['src/worker.ts', 'worker.js'],
];
for (const [entry, name] of files) {
  await esbuild.build({ ...options, entryPoints: [join(root, entry)], outfile: join(out, name) });
}
if (check) {
  const stale = files.filter(([, name]) => {
    let committed;
    try {
      committed = readFileSync(join(assets, name));
    } catch {
      return true;
    }
    return !committed.equals(readFileSync(join(out, name)));
  });
  rmSync(out, { recursive: true, force: true });
  if (stale.length) {
    console.error(`stale demo bundle(s) in crates/herald-cli/assets/demo: ${stale.map(([, n]) => n).join(', ')}; run npm run build:demo and commit`);
    process.exit(1);
  }
  console.log('demo bundles match their sources');
} else {
  for (const [, name] of files) console.log(`crates/herald-cli/assets/demo/${name}: ${readFileSync(join(out, name)).length} bytes`);
}
