// Compat: protocol-v2 heartbeats (server sends '' text frames, client answers
// '') with a short ping interval/timeout: silent sockets are closed with 4001,
// the official client stays connected.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {connectClient, collect, RawSocket, withTimeout} = require('./lib/client');

const PING_INTERVAL = 200;
const PING_TIMEOUT = 1000;

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture', pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT});
});
after(() => server && server.stop());

test('handshake advertises the configured pingTimeout', {timeout: 15000}, async (t) => {
  const {status} = await connectClient(t, server.port);
  assert.equal(status.pingTimeout, PING_TIMEOUT);
});

test('a socket that handshakes and never answers pings is closed with 4001', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = false;
  const started = Date.now();
  await raw.handshake();
  // Pings are empty text frames.
  await raw.waitFrame((f) => f === '', 3000, "a '' ping frame");
  const closed = await raw.waitClose(PING_TIMEOUT + 4000);
  const elapsed = Date.now() - started;
  assert.equal(closed.code, 4001, `expected close 4001 (pong timeout), got ${closed.code} ${closed.reason}`);
  assert.ok(elapsed >= PING_TIMEOUT * 0.8, `closed too early (${elapsed} ms)`);
});

test('a raw socket answering pings with "" stays open', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  const N = 8; // 8 x 200 ms > pingTimeout
  for (let i = 0; i < N; i++) {
    await Promise.race([
      raw.waitFrame((f) => f === '', 2000, `ping #${i + 1}`),
      raw.closed.then((c) => { throw new Error(`closed early: ${c.code} ${c.reason}`); }),
    ]);
  }
  assert.equal(raw.isOpen, true);
});

test('the official client stays connected across many ping intervals', {timeout: 15000}, async (t) => {
  const {socket} = await connectClient(t, server.port);
  const messages = collect(socket.listener('message'));
  const closes = collect(socket.listener('close'));
  const N = 8; // 8 x 200 ms = 1.6 s, well beyond pingTimeout (1 s)
  let pings = 0;
  const pingsSeen = (async () => {
    while (pings < N) {
      await messages.waitFor((it) => it.message === '', 2000, `ping #${pings + 1}`);
      pings += 1;
    }
  })();
  // Untimed: only ever loses the race unless the client closes.
  const closed = closes.next(null).then((ev) => {
    throw new Error(`client closed: ${ev.code} ${ev.reason}`);
  });
  await withTimeout(Promise.race([pingsSeen, closed]), 6000, `${N} pings`);
  assert.equal(pings, N);
  assert.equal(socket.state, 'open');
  assert.deepEqual(closes.items, []);
  assert.equal(await socket.invoke('echo', 'alive'), 'alive');
});
