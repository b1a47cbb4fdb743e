// Test helper: spawns the server under test and tears it down after the test.
//
// Target is chosen by env COMPAT_TARGET:
//   'herald' (default): HERALD_BIN (default <repo>/target/debug/herald) for the
//       plain server and HERALD_FIXTURE_BIN (default <repo>/target/debug/herald-fixture)
//       for the fixture server; both run as
//       `<bin> serve --listen 127.0.0.1:<port> --auth-secret <S> [--ping-interval ..]
//        [--ping-timeout ..] [--max-payload BYTES] [--api-key KEY]` and print a line containing
//       `ws://127.0.0.1:<port>/socketcluster/` (`wss://` with --tls-cert).
//   'reference': ../../reference/sc-server.js (the real socketcluster-server@20),
//       configured through env PORT, AUTH_KEY, PING_INTERVAL, PING_TIMEOUT,
//       MAX_PAYLOAD; prints `listening <port>`.
'use strict';

const {spawn} = require('child_process');
const fs = require('fs');
const path = require('path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const TARGET = process.env.COMPAT_TARGET || 'herald';
if (TARGET !== 'herald' && TARGET !== 'reference') {
  throw new Error(`COMPAT_TARGET must be 'herald' or 'reference', got '${TARGET}'`);
}
const IS_REFERENCE = TARGET === 'reference';
const IS_HERALD = TARGET === 'herald';

const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO_ROOT, 'target', 'debug', 'herald');
const HERALD_FIXTURE_BIN = process.env.HERALD_FIXTURE_BIN ||
  path.join(REPO_ROOT, 'target', 'debug', 'herald-fixture');
const REFERENCE_SCRIPT = path.join(__dirname, '..', '..', 'reference', 'sc-server.js');

const DEFAULT_SECRET = 'herald-test-secret';
const STARTUP_TIMEOUT_MS = 10000;
const STOP_TIMEOUT_MS = 3000;
const API_TIMEOUT_MS = 5000;

const live = new Set();

// Format milliseconds the way the Herald CLI is documented to accept (200ms, 1s).
function formatDuration(ms) {
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function buildCommand(opts) {
  const secret = opts.secret || DEFAULT_SECRET;
  const port = opts.port || 0;
  if (IS_REFERENCE) {
    // EXIT_ON_STDIN_CLOSE: the server exits if this test process dies abruptly.
    const env = {...process.env, PORT: String(port), AUTH_KEY: secret, EXIT_ON_STDIN_CLOSE: '1'};
    delete env.PING_INTERVAL;
    delete env.PING_TIMEOUT;
    delete env.MAX_PAYLOAD;
    if (opts.pingInterval != null) env.PING_INTERVAL = String(opts.pingInterval);
    if (opts.pingTimeout != null) env.PING_TIMEOUT = String(opts.pingTimeout);
    if (opts.maxPayload != null) env.MAX_PAYLOAD = String(opts.maxPayload);
    return {
      file: process.execPath,
      args: [REFERENCE_SCRIPT],
      env,
      portRegex: /()listening (\d+)/,
    };
  }
  const file = opts.kind === 'plain' ? HERALD_BIN : HERALD_FIXTURE_BIN;
  if (!fs.existsSync(file)) {
    throw new Error(
      `Herald binary not found: ${file} (build it with cargo, or set ` +
      `${opts.kind === 'plain' ? 'HERALD_BIN' : 'HERALD_FIXTURE_BIN'}; ` +
      `or run with COMPAT_TARGET=reference)`
    );
  }
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--auth-secret', secret];
  if (opts.pingInterval != null) args.push('--ping-interval', formatDuration(opts.pingInterval));
  if (opts.pingTimeout != null) args.push('--ping-timeout', formatDuration(opts.pingTimeout));
  if (opts.maxPayload != null) args.push('--max-payload', String(opts.maxPayload));
  if (opts.apiKey != null) args.push('--api-key', opts.apiKey);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  return {file, args, env: {...process.env, ...(opts.env || {})}, portRegex: /(wss?):\/\/[^:]+:(\d+)/};
}

/**
 * Start a server. opts:
 *   kind: 'fixture' (default) | 'plain'
 *   port: fixed port (default 0 = OS-chosen)
 *   secret, pingInterval (ms), pingTimeout (ms), maxPayload (bytes)
 *   apiKey: turns on Herald's HTTP API (`POST /api/<method>`, docs/api.md) behind this key
 *       (Herald only; server.api(method, params) calls it)
 *   extraArgs: more `herald serve` arguments (Herald only), e.g. ['--broker', url]
 *   env: more environment variables (Herald only), e.g. {HERALD_UNKNOWN_PROCEDURES: 'ignore'}
 * If `t` (a node:test context) is given, the server is stopped after the test.
 * Resolves {port, url, proc, stop(), kill(signal), exited, stderr()}.
 */
async function startServer(t, opts = {}) {
  const {file, args, env, portRegex} = buildCommand(opts);
  const proc = spawn(file, args, {env, stdio: [IS_REFERENCE ? 'pipe' : 'ignore', 'pipe', 'pipe']});
  let stdout = '';
  let stderr = '';
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => resolve({code, signal}));
  });
  const server = {
    proc,
    port: null,
    url: null,
    exited,
    stderr: () => stderr,
    describe: () => `${path.basename(file)} ${args.join(' ')}`,
    /**
     * `POST /api/<method>` with `params` and the API key (opts.apiKey), as a
     * backend calls it; resolves {status, body} (body parsed from JSON).
     */
    async api(method, params = {}) {
      const res = await fetch(`http://127.0.0.1:${server.port}/api/${method}`, {
        method: 'POST',
        headers: {'content-type': 'application/json', 'x-api-key': opts.apiKey || ''},
        body: JSON.stringify(params),
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      });
      return {status: res.status, body: await res.json()};
    },
    kill(signal = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
    async stop() {
      live.delete(server);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      let timer;
      const gaveUp = new Promise((resolve) => {
        timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
      });
      const r = await Promise.race([exited, gaveUp]);
      clearTimeout(timer);
      if (r === 'timeout') {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
  live.add(server);
  if (t) t.after(() => server.stop());

  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
    if (process.env.COMPAT_DEBUG) process.stderr.write(`[server stderr] ${chunk}`);
  });
  proc.stdout.setEncoding('utf8');

  await new Promise((resolve, reject) => {
    let timer;
    const fail = (why) => {
      clearTimeout(timer);
      proc.stdout.removeListener('data', onData);
      server.kill('SIGKILL');
      reject(new Error(
        `${why}\n  command: ${server.describe()}\n  stdout: ${JSON.stringify(stdout)}\n` +
        `  stderr: ${stderr || '(empty)'}`
      ));
    };
    const onData = (chunk) => {
      stdout += chunk;
      if (process.env.COMPAT_DEBUG) process.stderr.write(`[server stdout] ${chunk}`);
      const m = portRegex.exec(stdout);
      if (m) {
        clearTimeout(timer);
        proc.stdout.removeListener('data', onData);
        // Keep draining stdout so the child never blocks on a full pipe.
        proc.stdout.on('data', () => {});
        server.port = Number(m[2]);
        server.url = `${m[1] || 'ws'}://127.0.0.1:${server.port}/socketcluster/`;
        resolve();
      }
    };
    proc.stdout.on('data', onData);
    proc.once('error', (err) => fail(`failed to spawn server: ${err.message}`));
    exited.then(({code, signal}) => {
      if (server.port == null) fail(`server exited before printing its URL (code ${code}, signal ${signal})`);
    });
    timer = setTimeout(() => fail(`server did not print its URL within ${STARTUP_TIMEOUT_MS} ms`), STARTUP_TIMEOUT_MS);
  });
  return server;
}

// Last-resort cleanup if a test file exits without running its after hooks.
process.on('exit', () => {
  for (const s of live) {
    try { s.proc.kill('SIGKILL'); } catch (e) { /* already gone */ }
  }
});

module.exports = {
  startServer,
  TARGET,
  IS_REFERENCE,
  IS_HERALD,
  DEFAULT_SECRET,
  REPO_ROOT,
};
