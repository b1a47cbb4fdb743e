// Compat: robustness against malformed input, checked with a raw WebSocket -
// garbage after the handshake is ignored, messages before the handshake and a
// #handshake without cid are rejected with socketcluster's close codes (4009,
// 4008), and a message over the max payload closes the socket with 1009.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer, IS_HERALD} = require('./lib/server');
const {RawSocket, connectClient} = require('./lib/client');

const MAX_PAYLOAD = 1024;

let server;
let small;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
  small = await startServer(null, {kind: 'fixture', maxPayload: MAX_PAYLOAD});
});
after(async () => {
  if (server) await server.stop();
  if (small) await small.stop();
});

test('garbage after the handshake gets no reply and the socket stays usable', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  const garbage = ['not json{', '{"foo":1}', '{"event":42,"cid":7}', '123', '"str"', '[]', '{"rid":"x"}', '{"rid":999}'];
  for (const g of garbage) raw.send(g);
  raw.send({event: 'echo', data: 'after-garbage', cid: 2});
  // Frames are processed in order, so any reply to the garbage would arrive first.
  const {packet} = await raw.nextMessage(5000, 'first reply after garbage');
  assert.deepEqual(packet, {rid: 2, data: 'after-garbage'},
    'the first non-ping frame after garbage must be the echo reply');
  assert.equal(raw.isOpen, true);
});

test('a protocol packet before the handshake closes the socket with 4009', {timeout: 15000}, async (t) => {
  for (const frame of [
    {event: 'echo', data: 1, cid: 1},
    {event: '#subscribe', data: {channel: 'x'}, cid: 1},
    {foo: 1},
  ]) {
    const raw = await RawSocket.open(t, server.url);
    raw.send(frame);
    const closed = await raw.waitClose(5000);
    assert.equal(closed.code, 4009, `after ${JSON.stringify(frame)}`);
    assert.deepEqual(raw.frames.filter((f) => f !== ''), [], 'no reply before closing');
  }
});

// socketcluster-server (strictHandshake, the default) treats ANY message before
// #handshake as a violation: sc-formatter.decode('not json{') returns the string
// itself, _processInboundPacket sees no string `event` and closes with 4009
// (serversocket.js, "if (this.server.strictHandshake && this.state ===
// this.CONNECTING)"); an early '' pong goes the same way in
// _handleInboundMessageStream. Herald does the same.
test('undecodable text or an early pong before the handshake closes the socket with 4009', {
  timeout: 15000,
}, async (t) => {
  for (const frame of ['not json{', '']) {
    const raw = await RawSocket.open(t, server.url);
    raw.send(frame);
    const closed = await raw.waitClose(3000);
    assert.equal(closed.code, 4009, `after ${JSON.stringify(frame)}`);
  }
});

test('a #handshake without cid closes the socket with 4008', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.send({event: '#handshake', data: {}});
  const closed = await raw.waitClose(5000);
  assert.equal(closed.code, 4008);
});

test(`a message over the max payload (${MAX_PAYLOAD} bytes) closes with 1009`, {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, small.url);
  raw.answerPings = true;
  await raw.handshake();
  // Under the limit still works.
  const okData = 'a'.repeat(MAX_PAYLOAD - 200);
  assert.deepEqual(await raw.request('echo', okData, 2), {rid: 2, data: okData});
  raw.send({event: 'echo', data: 'b'.repeat(MAX_PAYLOAD * 4), cid: 3});
  const closed = await raw.waitClose(5000);
  assert.equal(closed.code, 1009);
});

test('the server keeps serving other clients after malformed input', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.send('\u0000\u0001 binary-ish junk');
  raw.send(Buffer.from([0xff, 0xfe, 0x00]));
  const {socket} = await connectClient(t, server.port);
  assert.equal(await socket.invoke('echo', 'ok'), 'ok');
});
