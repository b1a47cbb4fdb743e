// Compat: channels with the official client - subscribe/unsubscribe, publish
// with and without ack across clients, server-side publish, and the fixture's
// subscribe/publish middleware (private/ needs auth, readonly/ refuses client
// publishes with ForbiddenError).
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {
  connectClient, collect, subscribe, rejection, RawSocket, parseMaybe, unique, withTimeout,
} = require('./lib/client');

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
});
after(() => server && server.stop());

// Raw inbound frames of an official client, parsed; returns a collector.
function rawFrames(socket) {
  return collect(socket.listener('message'));
}
function isPublishFrame(item, channel, data) {
  const p = parseMaybe(item.message);
  if (!p || typeof p !== 'object') return false;
  const list = Array.isArray(p) ? p : [p];
  return list.some((x) => x && x.event === '#publish' && x.data && x.data.channel === channel &&
    (data === undefined || JSON.stringify(x.data.data) === JSON.stringify(data)));
}

test('subscribe, receive a publish, unsubscribe, then no longer receive', {timeout: 15000}, async (t) => {
  const ch = unique('room-');
  const sentinel = unique('sentinel-');
  const {socket: a} = await connectClient(t, server.port);
  const {socket: b} = await connectClient(t, server.port);

  const channel = await subscribe(a, ch);
  await subscribe(a, sentinel);
  assert.equal(a.isSubscribed(ch), true);
  assert.deepEqual(a.subscriptions().sort(), [ch, sentinel].sort());

  const got = collect(channel);
  await b.invokePublish(ch, {n: 1});
  assert.deepEqual(await got.next(5000, `publish on ${ch}`), {n: 1});

  const frames = rawFrames(a);
  const unsubEvents = collect(channel.listener('unsubscribe'));
  a.unsubscribe(ch);
  await unsubEvents.next(2000, "channel 'unsubscribe' event");
  assert.equal(a.isSubscribed(ch), false);
  // #unsubscribe is a transmit (no ack): an invoke on the same connection
  // after it proves the server has processed it.
  assert.deepEqual(await a.invoke('echo', 'sync'), 'sync');

  await b.invokePublish(ch, {n: 2});
  await b.invokePublish(sentinel, 'after');
  await frames.waitFor((it) => isPublishFrame(it, sentinel, 'after'), 5000, `sentinel publish on ${sentinel}`);
  const leaked = frames.items.filter((it) => isPublishFrame(it, ch));
  assert.deepEqual(leaked.map((it) => it.message), [],
    'server must not deliver #publish for a channel the socket unsubscribed from');
});

test('invokePublish (acked) and transmitPublish reach all subscribers, publisher included', {timeout: 15000}, async (t) => {
  const ch = unique('fanout-');
  const {socket: a} = await connectClient(t, server.port);
  const {socket: b} = await connectClient(t, server.port);
  const chA = await subscribe(a, ch);
  const chB = await subscribe(b, ch);
  const gotA = collect(chA);
  const gotB = collect(chB);

  const ack = await withTimeout(a.invokePublish(ch, {from: 'a', n: 1}), 5000, 'invokePublish ack');
  assert.equal(ack, undefined, 'invokePublish resolves with no data');
  assert.deepEqual(await gotA.next(5000, 'a receives own publish'), {from: 'a', n: 1});
  assert.deepEqual(await gotB.next(5000, 'b receives a publish'), {from: 'a', n: 1});

  await b.transmitPublish(ch, {from: 'b', n: 2});
  assert.deepEqual(await gotA.next(5000, 'a receives transmitPublish'), {from: 'b', n: 2});
  assert.deepEqual(await gotB.next(5000, 'b receives own transmitPublish'), {from: 'b', n: 2});

  // Various JSON payload shapes survive the round trip.
  const payloads = ['text', 0, false, null, [1, 'two', {three: 3}], {nested: {deep: [true]}}];
  for (const p of payloads) await a.invokePublish(ch, p);
  for (const p of payloads) assert.deepEqual(await gotB.next(5000, `payload ${JSON.stringify(p)}`), p);
});

test('publish on a channel nobody subscribed to still acks', {timeout: 15000}, async (t) => {
  const {socket: a} = await connectClient(t, server.port);
  await withTimeout(a.invokePublish(unique('empty-'), 1), 5000, 'invokePublish ack');
});

test('raw frames: #subscribe/#publish replies and the #publish push shape', {timeout: 15000}, async (t) => {
  const ch = unique('raw-');
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  const sub = await raw.request('#subscribe', {channel: ch}, 2);
  assert.equal(sub.rid, 2);
  assert.equal(sub.error, undefined);
  assert.equal(sub.data ?? null, null);

  raw.send({event: '#publish', data: {channel: ch, data: {x: 1}}, cid: 3});
  const push = await raw.waitFrame((f) => {
    const p = parseMaybe(f);
    return p && p.event === '#publish';
  }, 5000, '#publish push');
  assert.deepEqual(JSON.parse(push.frame), {event: '#publish', data: {channel: ch, data: {x: 1}}});
  const {frame} = await raw.waitFrame((f) => (parseMaybe(f) || {}).rid === 3, 5000, 'publish ack rid=3');
  const ack = JSON.parse(frame);
  assert.equal(ack.error, undefined);
  assert.equal(ack.data ?? null, null);

  // #unsubscribe with a cid gets an ack too.
  const unsub = await raw.request('#unsubscribe', ch, 4);
  assert.equal(unsub.error, undefined);
});

test('serverPublish (exchange publish) reaches client subscribers', {timeout: 15000}, async (t) => {
  const ch = unique('srvpub-');
  const {socket: a} = await connectClient(t, server.port);
  const {socket: b} = await connectClient(t, server.port);
  const got = collect(await subscribe(b, ch));
  await a.invoke('serverPublish', {channel: ch, data: {hello: 'world'}});
  assert.deepEqual(await got.next(5000, 'server publish'), {hello: 'world'});
});

test('middleware: private/ channels refuse unauthenticated subscribers with ForbiddenError', {timeout: 15000}, async (t) => {
  const ch = `private/${unique('p-')}`;
  const {socket} = await connectClient(t, server.port);
  const channel = socket.subscribe(ch);
  const ev = await withTimeout(channel.listener('subscribeFail').once(), 5000, "channel 'subscribeFail'");
  assert.equal(ev.error.name, 'ForbiddenError');
  assert.equal(socket.isSubscribed(ch, true), false);

  // Authenticated: allowed.
  const authed = collect(socket.listener('authenticate'));
  await socket.invoke('login', {user: 'alice'});
  await authed.next(5000, "'authenticate' after login");
  await subscribe(socket, ch);
  assert.equal(socket.isSubscribed(ch), true);
});

test('middleware: client publish to readonly/ fails with ForbiddenError and is not delivered', {timeout: 15000}, async (t) => {
  const ch = `readonly/${unique('r-')}`;
  const sentinel = unique('sentinel-');
  const {socket: pub} = await connectClient(t, server.port);
  const {socket: sub} = await connectClient(t, server.port);
  const chSub = await subscribe(sub, ch);
  await subscribe(sub, sentinel);
  const frames = rawFrames(sub);
  const got = collect(chSub);

  const err = await rejection(pub.invokePublish(ch, 'nope'), 5000, 'invokePublish to readonly/');
  assert.equal(err.name, 'ForbiddenError');
  await pub.transmitPublish(ch, 'nope-2');
  await pub.invokePublish(sentinel, 'done');
  await frames.waitFor((it) => isPublishFrame(it, sentinel, 'done'), 5000, 'sentinel publish');
  assert.deepEqual(frames.items.filter((it) => isPublishFrame(it, ch)).map((it) => it.message), [],
    'blocked publishes must not be delivered');

  // Server-side publish to the same channel is allowed.
  await pub.invoke('serverPublish', {channel: ch, data: 'from-server'});
  assert.equal(await got.next(5000, 'server publish on readonly/'), 'from-server');
});
