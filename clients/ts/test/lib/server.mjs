// Test helper: runs a real `herald serve` (the herald-fixture binary, which
// is `herald serve` with the test procedures and the hist:/tiny: namespaces,
// or the plain `herald` binary), the reference socketcluster-server 20, or a
// private redis-server, each on a free loopback port, stopped by PID after
// the test. Binaries: HERALD_FIXTURE_BIN / HERALD_BIN, default
// <repo>/target/debug/….
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
export const SECRET = 'herald-ts-test-secret';
const BIN = {
  fixture: process.env.HERALD_FIXTURE_BIN || join(REPO, 'target', 'debug', 'herald-fixture'),
  plain: process.env.HERALD_BIN || join(REPO, 'target', 'debug', 'herald'),
};

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function run(file, args, env, ready, what) {
  return new Promise((res, rej) => {
    const proc = spawn(file, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`${what} did not start within 15 s\n${out}\n${err}`));
    }, 15000);
    const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    proc.stdout.on('data', (d) => {
      out += d;
      if (ready.test(out)) {
        clearTimeout(timer);
        res({ proc, exited, stderr: () => err, stdout: () => out });
      }
    });
    proc.stderr.on('data', (d) => {
      err += d;
      if (err.length > 200000) err = err.slice(-100000);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${what} exited with ${code}\n${out}\n${err}`));
    });
  });
}

async function stopProc(p, signal = 'SIGTERM') {
  if (p.proc.exitCode !== null || p.proc.signalCode !== null) return;
  p.proc.kill(signal);
  const t = setTimeout(() => p.proc.kill('SIGKILL'), 3000);
  await p.exited;
  clearTimeout(t);
}

/**
 * Starts a Herald server. opts: kind 'fixture' (default) | 'plain', args
 * (more flags), port (default: free). Returns {port, url, http, kill(),
 * restart(), stop()}; with `t` it is stopped after the test.
 */
export async function startHerald(t, opts = {}) {
  const file = BIN[opts.kind ?? 'fixture'];
  if (!existsSync(file)) throw new Error(`${file} not found: build it with cargo build --bins -p herald-cli -p herald-testkit`);
  const port = opts.port ?? (await freePort());
  const args = ['serve', '--listen', `127.0.0.1:${port}`, ...(opts.noSecret ? [] : ['--auth-secret', opts.secret ?? SECRET]), ...(opts.args ?? [])];
  let p = await run(file, args, { RUST_LOG: process.env.RUST_LOG ?? 'warn' }, /listening on wss?:\/\//, `${file} ${args.join(' ')}`);
  const server = {
    port,
    url: `ws://127.0.0.1:${port}/socketcluster/`,
    http: `http://127.0.0.1:${port}`,
    stderr: () => p.stderr(),
    /** SIGKILL: no goodbye to the clients. */
    async kill() {
      await stopProc(p, 'SIGKILL');
    },
    /** Starts it again on the same port. */
    async restart() {
      await stopProc(p, 'SIGKILL');
      p = await run(file, args, { RUST_LOG: process.env.RUST_LOG ?? 'warn' }, /listening on wss?:\/\//, file);
    },
    async stop() {
      await stopProc(p);
    },
    /** The server's count of open sockets (GET /herald/info). */
    async clients() {
      const r = await fetch(`${server.http}/herald/info`);
      return (await r.json()).clients;
    },
  };
  t?.after(() => server.stop());
  return server;
}

/** The reference socketcluster-server 20 (tests/node/reference/sc-server.js, the fixture's twin; needs npm ci in tests/node). */
export async function startReference(t) {
  const script = join(REPO, 'tests', 'node', 'reference', 'sc-server.js');
  if (!existsSync(join(REPO, 'tests', 'node', 'node_modules', 'socketcluster-server'))) {
    throw new Error('tests/node/node_modules is missing: run npm ci in tests/node');
  }
  const p = await run(process.execPath, [script], { PORT: '0', AUTH_KEY: SECRET, EXIT_ON_STDIN_CLOSE: '1' }, /listening \d+/, 'sc-server.js');
  const port = Number(/listening (\d+)/.exec(p.stdout())[1]);
  t?.after(() => stopProc(p));
  return { port, url: `ws://127.0.0.1:${port}/socketcluster/` };
}

/** A private redis-server on a free port (no persistence), stopped by PID after the test. */
export async function startRedis(t) {
  const port = await freePort();
  const p = await run('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {}, /Ready to accept connections/, 'redis-server');
  t?.after(() => stopProc(p));
  return { port, url: `redis://127.0.0.1:${port}` };
}

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
export function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Resolves when `check()` is true, polling every 20 ms, within `ms`. */
export async function until(ms, what, check) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Takes the next `n` publications of a subscription. */
export async function take(sub, n, ms = 5000) {
  const out = [];
  const it = sub[Symbol.asyncIterator]();
  await within(ms, `${n} publications on ${sub.channel}`, (async () => {
    while (out.length < n) {
      const r = await it.next();
      if (r.done) throw new Error(`${sub.channel} ended after ${out.length}`);
      out.push(r.value);
    }
  })());
  return out;
}
