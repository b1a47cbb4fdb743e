// Test helper: private engines (redis-server, nats-server) on free loopback
// ports in temp dirs, stopped by their PID after the test. Never touches the
// machine's shared Redis or NATS.
'use strict';

const {spawn} = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts redis-server; resolves {port, url, stop()} once it accepts connections. */
async function startRedis(t) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-redis-'));
  const proc = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir,
  ], {stdio: ['ignore', 'pipe', 'pipe']});
  let out = '';
  proc.stdout.setEncoding('utf8');
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000);
    proc.once('error', (e) => { clearTimeout(timer); reject(e); });
    proc.stdout.on('data', (c) => {
      out += c;
      if (out.includes('Ready to accept connections')) { clearTimeout(timer); resolve(); }
    });
  });
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, {recursive: true, force: true});
    },
  };
  if (t) t.after(() => redis.stop());
  return redis;
}

module.exports = {startRedis, freePort};

/** Starts a private nats-server; resolves {port, url, stop()} once it listens. */
async function startNats(t) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-nats-'));
  const proc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], {
    cwd: dir, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server did not start: ${out}`)), 10000);
    proc.once('error', (e) => { clearTimeout(timer); reject(e); });
    const onData = (c) => {
      out += c;
      if (out.includes('Server is ready')) { clearTimeout(timer); resolve(); }
    };
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
  });
  const nats = {
    port,
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      fs.rmSync(dir, {recursive: true, force: true});
    },
  };
  if (t) t.after(() => nats.stop());
  return nats;
}

module.exports.startNats = startNats;
