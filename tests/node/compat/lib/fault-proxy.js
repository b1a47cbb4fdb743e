// Test helper: the `herald-fault-proxy` binary (crates/herald-testkit) between
// a client and the server under test, driven over its line-based control
// socket: pass / delay MS / blackhole / cut, for `all` (open and later
// connections), `live` (open ones only) or one connection id; `list`.
//
// Binary: HERALD_FAULT_PROXY_BIN, default <repo>/target/debug/herald-fault-proxy
// (built by `cargo build --workspace --bins`). It works the same whichever
// server is upstream (Herald or the reference socketcluster-server).
'use strict';

const {spawn} = require('child_process');
const fs = require('fs');
const net = require('net');
const path = require('path');
const {REPO_ROOT} = require('./server');

const BIN = process.env.HERALD_FAULT_PROXY_BIN ||
  path.join(REPO_ROOT, 'target', 'debug', 'herald-fault-proxy');
const STARTUP_TIMEOUT_MS = 10000;
const REPLY_TIMEOUT_MS = 5000;

function parseAddr(text) {
  const i = text.lastIndexOf(':');
  return {host: text.slice(0, i), port: Number(text.slice(i + 1))};
}

/**
 * Start a proxy forwarding to 127.0.0.1:`upstreamPort`. Stopped after the
 * test `t`. Resolves {port, command(line), list(), stop()}.
 */
async function startFaultProxy(t, upstreamPort) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`fault proxy not found: ${BIN} (cargo build -p herald-testkit --bins, or set HERALD_FAULT_PROXY_BIN)`);
  }
  // stdin kept open as a pipe: the proxy exits when this process goes away.
  const proc = spawn(BIN, ['--upstream', `127.0.0.1:${upstreamPort}`, '--exit-on-stdin-close'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => { if (stderr.length < 16384) stderr += c; });
  const addrs = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`fault proxy printed nothing in ${STARTUP_TIMEOUT_MS} ms; stderr: ${stderr}`));
    }, STARTUP_TIMEOUT_MS);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (c) => {
      out += c;
      const m = /proxy (\S+) control (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({proxy: parseAddr(m[1]), control: parseAddr(m[2])});
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fault proxy exited (${code}) before listening; stderr: ${stderr}`));
    });
  });

  const control = net.connect(addrs.control.port, addrs.control.host);
  control.setEncoding('utf8');
  await new Promise((resolve, reject) => {
    control.once('connect', resolve);
    control.once('error', reject);
  });
  let buffered = '';
  const waiting = [];
  control.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(line);
    }
  });

  const proxy = {
    port: addrs.proxy.port,
    /** Sends one control command; resolves the text after `ok `, rejects on `err`. */
    command(line) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reply to '${line}'`)), REPLY_TIMEOUT_MS);
        waiting.push((reply) => {
          clearTimeout(timer);
          if (reply.startsWith('ok')) resolve(reply.slice(3));
          else reject(new Error(`fault proxy: '${line}' -> ${reply}`));
        });
        control.write(`${line}\n`);
      });
    },
    /** The open connections: [{id, client, upstreamLocal, fault}]. */
    async list() {
      return JSON.parse(await proxy.command('list'));
    },
    async stop() {
      control.destroy();
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.stdin.end();
        proc.kill('SIGTERM');
        await exited;
      }
    },
  };
  if (t) t.after(() => proxy.stop());
  return proxy;
}

module.exports = {startFaultProxy};
