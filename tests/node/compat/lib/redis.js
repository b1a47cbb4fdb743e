// Test helper: a private redis-server on a free loopback port in a temp dir,
// stopped by its PID after the test. Never touches the machine's shared Redis.
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
