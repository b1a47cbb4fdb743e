// Compat: the official client's auto-reconnect against the plain `herald serve`
// - SIGKILL the server, restart it on the same port, and check the client
// reconnects and resubscribes on its own.
'use strict';

const {test} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {connectClient, collect, subscribe, unique, withTimeout} = require('./lib/client');

const reconnectOptions = {
  autoReconnectOptions: {initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: 1000},
};

test('client reconnects and resubscribes after a server restart on the same port', {timeout: 15000}, async (t) => {
  const first = await startServer(t, {kind: 'plain'});
  const port = first.port;
  const ch = unique('durable-');

  const {socket} = await connectClient(t, port, reconnectOptions);
  const channel = await subscribe(socket, ch);
  const firstId = socket.id;
  const subscribes = collect(channel.listener('subscribe'));
  const connects = collect(socket.listener('connect'));
  const disconnects = collect(socket.listener('disconnect'));
  const data = collect(channel);

  await first.kill('SIGKILL');
  const dis = await disconnects.next(5000, "'disconnect' after SIGKILL");
  assert.equal(typeof dis.code, 'number');
  assert.notEqual(dis.code, 1000);

  await startServer(t, {kind: 'plain', port});
  await connects.next(10000, "'connect' after restart");
  await subscribes.next(5000, "channel 'subscribe' again after reconnect");
  assert.equal(socket.state, 'open');
  assert.equal(socket.isSubscribed(ch), true);
  assert.notEqual(socket.id, firstId, 'a new connection gets a new id');

  const {socket: publisher} = await connectClient(t, port);
  await withTimeout(publisher.invokePublish(ch, {after: 'restart'}), 5000, 'invokePublish');
  assert.deepEqual(await data.next(5000, 'publish after restart'), {after: 'restart'});
});
