// Compat: handshake with the official socketcluster-client, plus the raw
// #handshake reply shape socketcluster-server 20 produces.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {connectClient, RawSocket, collect} = require('./lib/client');

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
});
after(() => server && server.stop());

test('official client handshake: open, has id, unauthenticated', {timeout: 15000}, async (t) => {
  const {socket, status} = await connectClient(t, server.port);
  assert.equal(socket.state, 'open');
  assert.equal(typeof socket.id, 'string');
  assert.ok(socket.id.length > 0, 'socket.id must be non-empty');
  assert.equal(status.id, socket.id);
  assert.equal(status.isAuthenticated, false);
  assert.equal(status.authError, undefined, 'no authError when no token was sent');
  assert.equal(typeof status.pingTimeout, 'number');
  assert.equal(socket.authState, 'unauthenticated');
  assert.equal(socket.authToken, null);
  assert.equal(socket.signedAuthToken, null);
});

test('two clients get distinct ids', {timeout: 15000}, async (t) => {
  const a = await connectClient(t, server.port);
  const b = await connectClient(t, server.port);
  assert.notEqual(a.socket.id, b.socket.id);
});

test('raw #handshake reply is {rid, data: {id, pingTimeout, isAuthenticated: false}}', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  const reply = await raw.handshake(undefined, 1);
  assert.equal(reply.rid, 1);
  assert.equal(reply.error, undefined);
  assert.equal(typeof reply.data, 'object');
  assert.equal(typeof reply.data.id, 'string');
  assert.ok(reply.data.id.length > 0);
  assert.equal(typeof reply.data.pingTimeout, 'number');
  assert.equal(reply.data.isAuthenticated, false);
  assert.ok(!('authError' in reply.data), `no authError expected, got ${JSON.stringify(reply.data)}`);
  // The socket is usable afterwards.
  const echo = await raw.request('echo', {n: 1}, 2);
  assert.deepEqual(echo, {rid: 2, data: {n: 1}});
});

test('client disconnect() closes cleanly with 1000', {timeout: 15000}, async (t) => {
  const {socket} = await connectClient(t, server.port);
  const closes = collect(socket.listener('close'));
  socket.disconnect();
  const ev = await closes.next(5000, "client 'close'");
  assert.equal(ev.code, 1000);
  assert.equal(socket.state, 'closed');
  // Server side keeps working for new clients.
  const again = await connectClient(t, server.port);
  assert.equal(again.socket.state, 'open');
});
