// Compat: batched frames - the official client with batchOnHandshake or
// startBatching() sends JSON arrays of packets; the server must process every
// packet of an array in order.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {
  createClient, connectClient, waitConnect, collect, subscribe, RawSocket, parseMaybe, unique, withTimeout,
} = require('./lib/client');

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
});
after(() => server && server.stop());

// Record every frame the client's transport sends (the transport is created
// synchronously by create() when autoConnect is on).
function recordSent(socket) {
  const sent = [];
  const transport = socket.transport;
  const orig = transport.send.bind(transport);
  transport.send = (data) => {
    sent.push(data);
    orig(data);
  };
  return sent;
}
const isArrayFrame = (f) => typeof f === 'string' && f.startsWith('[');

test('batchOnHandshake: subscriptions are sent as a JSON array and work', {timeout: 15000}, async (t) => {
  const ch1 = unique('batch-a-');
  const ch2 = unique('batch-b-');
  const socket = createClient(t, server.port, {batchOnHandshake: true, batchOnHandshakeDuration: 100});
  const sent = recordSent(socket);
  const c1 = socket.subscribe(ch1);
  const c2 = socket.subscribe(ch2);
  const subs1 = collect(c1.listener('subscribe'));
  const subs2 = collect(c2.listener('subscribe'));
  await waitConnect(socket);
  await subs1.next(5000, `subscribe ${ch1}`);
  await subs2.next(5000, `subscribe ${ch2}`);

  const batches = sent.filter(isArrayFrame).map((f) => JSON.parse(f));
  const batchedEvents = batches.flat().map((p) => p.event);
  assert.ok(batches.some((b) => b.length >= 2), `expected a multi-packet array frame, sent: ${JSON.stringify(sent)}`);
  assert.ok(batchedEvents.filter((e) => e === '#subscribe').length >= 2);

  const got = collect(c1);
  await socket.invokePublish(ch1, 'hello');
  assert.equal(await got.next(5000, 'publish'), 'hello');
});

test('startBatching(): invokes and publishes go out batched and all get answered', {timeout: 15000}, async (t) => {
  const ch = unique('batch-c-');
  const {socket} = await connectClient(t, server.port);
  const sent = recordSent(socket);
  const channel = await subscribe(socket, ch);
  const got = collect(channel);

  socket.startBatching();
  const results = Promise.all([
    socket.invoke('echo', 1),
    socket.invoke('echo', 2),
    socket.invokePublish(ch, 'p1'),
    socket.invoke('echo', 3),
  ]);
  socket.transmitPublish(ch, 'p2');
  const r = await withTimeout(results, 5000, 'batched invokes');
  socket.stopBatching();
  assert.deepEqual([r[0], r[1], r[3]], [1, 2, 3]);
  assert.equal(await got.next(5000, 'p1'), 'p1');
  assert.equal(await got.next(5000, 'p2'), 'p2');

  const batches = sent.filter(isArrayFrame).map((f) => JSON.parse(f));
  assert.ok(batches.some((b) => b.length >= 2), `expected array frames, sent: ${JSON.stringify(sent)}`);
});

test('raw: one array frame with #subscribe, #publish and echo gets every reply', {timeout: 15000}, async (t) => {
  const ch = unique('batch-raw-');
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  await raw.handshake();
  raw.send([
    {event: '#subscribe', data: {channel: ch}, cid: 2},
    {event: '#publish', data: {channel: ch, data: 'in-batch'}, cid: 3},
    {event: 'echo', data: 'e', cid: 4},
  ]);
  const flat = (f) => {
    const p = parseMaybe(f);
    return Array.isArray(p) ? p : [p];
  };
  const want = (pred, label) => raw.waitFrame((f) => flat(f).some(pred), 5000, label)
    .then(({frame}) => flat(frame).find(pred));
  // Wait on each independently; replies may be batched or not.
  const [sub, pub, echo, push] = await Promise.all([
    want((p) => p && p.rid === 2, 'rid 2'),
    want((p) => p && p.rid === 3, 'rid 3'),
    want((p) => p && p.rid === 4, 'rid 4'),
    want((p) => p && p.event === '#publish', '#publish push'),
  ].map((p, i) => p.catch((e) => { throw new Error(`item ${i}: ${e.message}`); })));
  assert.equal(sub.error, undefined);
  assert.equal(pub.error, undefined);
  assert.deepEqual(echo, {rid: 4, data: 'e'});
  assert.deepEqual(push, {event: '#publish', data: {channel: ch, data: 'in-batch'}});
});
