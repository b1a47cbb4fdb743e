// Compat: server-initiated actions on the official client - kicking a socket
// out of a channel (#kickOut) and disconnecting it with a code and reason.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {connectClient, collect, subscribe, RawSocket, parseMaybe, unique} = require('./lib/client');

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
});
after(() => server && server.stop());

test('kick: channel gets kickOut with the message and is no longer subscribed', {timeout: 15000}, async (t) => {
  const ch = unique('kick-');
  const sentinel = unique('sentinel-');
  const {socket} = await connectClient(t, server.port);
  const {socket: other} = await connectClient(t, server.port);
  const channel = await subscribe(socket, ch);
  await subscribe(socket, sentinel);
  const channelKicks = collect(channel.listener('kickOut'));
  const socketKicks = collect(socket.listener('kickOut'));
  const unsubs = collect(channel.listener('unsubscribe'));
  const frames = collect(socket.listener('message'));

  await socket.invoke('kick', {channel: ch, message: 'go away'});
  const ev = await channelKicks.next(5000, "channel 'kickOut'");
  assert.equal(ev.message, 'go away');
  const sev = await socketKicks.next(5000, "socket 'kickOut'");
  assert.deepEqual(sev, {channel: ch, message: 'go away'});
  await unsubs.next(2000, "channel 'unsubscribe'");
  assert.equal(socket.isSubscribed(ch, true), false);
  assert.ok(!socket.subscriptions(true).includes(ch));

  // Frame shape of the push.
  const kickFrame = frames.items.map((it) => parseMaybe(it.message)).find((p) => p && p.event === '#kickOut');
  assert.deepEqual(kickFrame, {event: '#kickOut', data: {channel: ch, message: 'go away'}});

  // Server side is unsubscribed too: a later publish on ch is not pushed to this socket.
  await other.invokePublish(ch, 'after-kick');
  await other.invokePublish(sentinel, 'sentinel');
  await frames.waitFor((it) => {
    const p = parseMaybe(it.message);
    return p && p.event === '#publish' && p.data.channel === sentinel;
  }, 5000, 'sentinel publish');
  const leaked = frames.items.map((it) => parseMaybe(it.message))
    .filter((p) => p && p.event === '#publish' && p.data && p.data.channel === ch && p.data.data === 'after-kick');
  assert.deepEqual(leaked, [], 'kicked socket must be unsubscribed server-side');

  // It can subscribe again.
  await subscribe(socket, ch);
});

test('raw: kick frames', {timeout: 15000}, async (t) => {
  const ch = unique('rawkick-');
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  await raw.request('#subscribe', {channel: ch}, 2);
  const reply = await raw.request('kick', {channel: ch, message: 'bye'}, 3);
  assert.equal(reply.error, undefined);
  const {frame} = await raw.waitFrame((f) => (parseMaybe(f) || {}).event === '#kickOut', 5000, '#kickOut');
  assert.deepEqual(JSON.parse(frame), {event: '#kickOut', data: {channel: ch, message: 'bye'}});
});

test('disconnectMe: client sees the close code and reason', {timeout: 15000}, async (t) => {
  const {socket} = await connectClient(t, server.port, {autoReconnect: false});
  const disconnects = collect(socket.listener('disconnect'));
  await socket.invoke('disconnectMe', {code: 4321, reason: 'test over'});
  const ev = await disconnects.next(5000, "'disconnect'");
  assert.equal(ev.code, 4321);
  assert.equal(ev.reason, 'test over');
  assert.equal(socket.state, 'closed');
});

test('raw: disconnectMe replies before closing', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  const reply = await raw.request('disconnectMe', {code: 4999, reason: 'done'}, 2);
  assert.equal(reply.error, undefined);
  const closed = await raw.waitClose(5000);
  assert.equal(closed.code, 4999);
  assert.equal(closed.reason, 'done');
});
