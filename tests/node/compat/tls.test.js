// Compat: the official socketcluster-client over wss:// against
// `herald serve --tls-cert --tls-key`, with a self-signed certificate made
// for the test (by the `herald-testcert` binary: node has no certificate
// generator) and given to the client's `ws` through `wsOptions.ca`.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {execFileSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {startServer, IS_REFERENCE, REPO_ROOT} = require('./lib/server');
const {connectClient, createClient, collect, subscribe} = require('./lib/client');

const skip = IS_REFERENCE && 'the reference script serves no TLS (Herald only)';
const CERT_BIN = process.env.HERALD_TESTCERT_BIN ||
  path.join(REPO_ROOT, 'target', 'debug', 'herald-testcert');

let server;
let dir;
let ca;
before(async () => {
  if (skip) return;
  if (!fs.existsSync(CERT_BIN)) {
    throw new Error(`${CERT_BIN} not found (cargo build -p herald-testkit, or set HERALD_TESTCERT_BIN)`);
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-tls-'));
  execFileSync(CERT_BIN, [dir]);
  ca = fs.readFileSync(path.join(dir, 'cert.pem'));
  server = await startServer(null, {
    kind: 'fixture',
    extraArgs: ['--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem')],
  });
});
after(async () => {
  if (server) await server.stop();
  if (dir) fs.rmSync(dir, {recursive: true, force: true});
});

test('herald serve with a certificate announces wss://', {skip, timeout: 15000}, () => {
  assert.match(server.url, /^wss:\/\//);
});

test('the official client connects over wss://, publishes and receives', {skip, timeout: 15000}, async (t) => {
  const tls = {secure: true, hostname: 'localhost', wsOptions: {ca}};
  const {socket, status} = await connectClient(t, server.port, tls);
  assert.equal(socket.state, 'open');
  assert.equal(status.id, socket.id);
  const channel = await subscribe(socket, 'tls-news');
  const got = collect(channel);
  await socket.invokePublish('tls-news', {over: 'wss'});
  assert.deepEqual(await got.next(5000, 'the publication over wss'), {over: 'wss'});
  assert.deepEqual(await socket.invoke('echo', {n: 1}), {n: 1});
});

test('a client that does not trust the certificate does not connect', {skip, timeout: 15000}, async (t) => {
  const socket = createClient(t, server.port, {
    secure: true, hostname: 'localhost', autoReconnect: false,
  });
  // ws fails the TLS handshake (self-signed certificate): the connection
  // aborts with 1006 before any handshake.
  const aborts = collect(socket.listener('connectAbort'));
  const abort = await aborts.next(5000, 'the aborted connection');
  assert.equal(abort.code, 1006);
  assert.notEqual(socket.state, 'open');
});
