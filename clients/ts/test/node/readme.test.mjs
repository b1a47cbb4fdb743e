// Every code snippet of the repository's README runs as written, against a
// real `herald serve --dev`: the JavaScript ones as ES modules under this
// Node (in clients/ts for `herald-client`, in tests/node for
// `socketcluster-client`, where those packages are installed), with the
// port 8000 of the snippets replaced by the test server's; the `cargo run
// ... -- serve` command with its flags (on a free port); `scripts/test.sh`
// is this suite itself, so it is only checked to exist. (The Rust snippet
// is built as a doc test of the herald crate: ReadmeDoctests.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { accessSync, constants, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO, startHerald } from '../lib/server.mjs';

const README = readFileSync(join(REPO, 'README.md'), 'utf8');
const blocks = [...README.matchAll(/^```([\w,]*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], code: m[2] }));

function runNode(dir, name, code) {
  const file = join(dir, name);
  writeFileSync(file, code);
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20000);
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      rmSync(file, { force: true });
      resolve({ code, signal, out, err });
    });
  });
}

test('the README has the snippets this test knows how to run', () => {
  const langs = blocks.map((b) => b.lang);
  assert.deepEqual(langs, ['sh', 'sh', 'js', 'js', 'rust,no_run']);
});

test('the README\'s JavaScript snippets run as ES modules against herald serve --dev', async (t) => {
  const server = await startHerald(t, { kind: 'plain', args: ['--dev'] });
  const js = blocks.filter((b) => b.lang === 'js');
  for (const [i, { code }] of js.entries()) {
    const dir = code.includes("from 'herald-client'")
      ? join(REPO, 'clients', 'ts')
      : code.includes("from 'socketcluster-client'")
        ? join(REPO, 'tests', 'node')
        : null;
    assert.ok(dir, `snippet ${i} imports a package this test knows`);
    assert.ok(code.includes('8000'), `snippet ${i} talks to the README's port`);
    const r = await runNode(dir, `.readme-snippet-${i}.mjs`, code.replaceAll('8000', String(server.port)));
    assert.equal(r.code, 0, `snippet ${i} exited with ${r.code ?? r.signal}\n${r.out}\n${r.err}`);
    assert.match(r.out, /hello/, `snippet ${i} printed the publication`);
  }
});

test('the README\'s shell commands', async (t) => {
  const sh = blocks.filter((b) => b.lang === 'sh').flatMap((b) => b.code.split('\n')).filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(sh.length, 2);
  const serve = /^cargo run --release -p herald-cli -- (serve.*)$/.exec(sh[0]);
  assert.ok(serve, sh[0]);
  const args = serve[1].split(/\s+/).slice(1);
  // The same flags on the debug build, on a free port instead of 8000.
  const server = await startHerald(t, { kind: 'plain', noSecret: true, args });
  const page = await fetch(`${server.http}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /id="login-name"/);
  assert.equal(sh[1], 'scripts/test.sh');
  accessSync(join(REPO, 'scripts', 'test.sh'), constants.X_OK);
});
