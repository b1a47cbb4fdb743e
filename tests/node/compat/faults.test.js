// Compat: the official socketcluster-client finds a dead server by itself.
// Between it and the server sits the fault proxy (crates/herald-testkit,
// `herald-fault-proxy`): a blackholed link keeps the TCP connection open and
// silent, so only the client's ping timeout (the handshake's pingTimeout,
// 1 s here) can tell. The client must close with 4000, reconnect, resubscribe
// and get publications again, in a few seconds.
'use strict';

const {test} = require('node:test');
const assert = require('node:assert/strict');
const {startServer} = require('./lib/server');
const {startFaultProxy} = require('./lib/fault-proxy');
const {connectClient, collect, subscribe, unique, withTimeout} = require('./lib/client');

const PING_INTERVAL = 200;
const PING_TIMEOUT = 1000;
const SLACK = 1500; // a busy 2-core machine
const MAX_DELAY = 500;
const reconnectOptions = {
  autoReconnectOptions: {initialDelay: 100, randomness: 100, multiplier: 1.5, maxDelay: MAX_DELAY},
};

/** Publishes `data` on `ch` until it arrives in `data` (the subscription may be on its way back). */
async function delivered(publisher, received, ch, value) {
  await withTimeout((async () => {
    for (;;) {
      await publisher.invokePublish(ch, value);
      try {
        await received.waitFor((d) => d === value, 200, `publication ${value}`);
        return;
      } catch (e) { /* not subscribed again yet: publish again */ }
    }
  })(), 10000, `publication ${value} after the reconnect`);
}

test('a blackholed server is found by the ping timeout; the client reconnects and resubscribes', {timeout: 30000}, async (t) => {
  const server = await startServer(t, {kind: 'fixture', pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT});
  const proxy = await startFaultProxy(t, server.port);
  const ch = unique('faults-');

  const {socket, status} = await connectClient(t, proxy.port, reconnectOptions);
  assert.equal(status.pingTimeout, PING_TIMEOUT);
  const channel = await subscribe(socket, ch);
  const received = collect(channel);
  const subscribes = collect(channel.listener('subscribe'));
  const disconnects = collect(socket.listener('disconnect'));
  const connects = collect(socket.listener('connect'));
  const {socket: publisher} = await connectClient(t, server.port);
  await delivered(publisher, received, ch, 'before');
  const firstId = socket.id;
  assert.equal((await proxy.list()).length, 1);

  // The open connection dies silently; new ones get through.
  assert.equal(await proxy.command('blackhole live'), '1');
  const blackholed = Date.now();
  const dis = await disconnects.next(PING_TIMEOUT + SLACK + 2000, "'disconnect' after the blackhole");
  const noticed = Date.now() - blackholed;
  assert.equal(dis.code, 4000, `expected the client's ping timeout, got ${dis.code} ${dis.reason}`);
  assert.ok(noticed >= PING_TIMEOUT - PING_INTERVAL, `noticed too early (${noticed} ms)`);
  assert.ok(noticed <= PING_TIMEOUT + SLACK, `noticed after ${noticed} ms`);

  await connects.next(MAX_DELAY + SLACK + 2000, "'connect' after the blackhole");
  const back = Date.now() - blackholed;
  assert.ok(back <= PING_TIMEOUT + MAX_DELAY + SLACK, `back after ${back} ms`);
  assert.notEqual(socket.id, firstId);
  await subscribes.next(5000, "channel 'subscribe' again");
  assert.equal(socket.isSubscribed(ch), true);
  await delivered(publisher, received, ch, 'after');
  // Old (still held open, blackholed) and new connection.
  const conns = await proxy.list();
  assert.ok(conns.some((c) => c.fault === 'blackhole'), JSON.stringify(conns));
  assert.ok(conns.some((c) => c.fault === 'pass'), JSON.stringify(conns));
});

test('a server unreachable for a while: the client keeps trying and comes back when it is', {timeout: 30000}, async (t) => {
  const server = await startServer(t, {kind: 'fixture', pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT});
  const proxy = await startFaultProxy(t, server.port);
  const ch = unique('faults-');

  const {socket} = await connectClient(t, proxy.port, {...reconnectOptions, connectTimeout: 500});
  const channel = await subscribe(socket, ch);
  const received = collect(channel);
  const {socket: publisher} = await connectClient(t, server.port);
  await delivered(publisher, received, ch, 1);
  const connects = collect(socket.listener('connect'));
  const closes = collect(socket.listener('close'));

  // Every connection blackholed, later ones too: attempts time out.
  await proxy.command('blackhole all');
  const first = await closes.next(PING_TIMEOUT + SLACK + 2000, "'close' after the blackhole");
  assert.equal(first.code, 4000);
  const attempt = await closes.next(5000, 'a failed reconnect attempt');
  assert.ok([4007, 1006].includes(attempt.code), `attempt closed with ${attempt.code} ${attempt.reason}`);
  assert.deepEqual(connects.items, [], 'no connect through a blackhole');

  await proxy.command('pass all');
  const healed = Date.now();
  await connects.next(500 + MAX_DELAY + SLACK + 2000, "'connect' after the heal");
  const back = Date.now() - healed;
  assert.ok(back <= 500 + MAX_DELAY + SLACK, `back after ${back} ms`);
  await delivered(publisher, received, ch, 2);
});

test('a cut (TCP reset) is noticed at once and the client reconnects', {timeout: 30000}, async (t) => {
  const server = await startServer(t, {kind: 'fixture', pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT});
  const proxy = await startFaultProxy(t, server.port);
  const ch = unique('faults-');
  const {socket} = await connectClient(t, proxy.port, reconnectOptions);
  const channel = await subscribe(socket, ch);
  const received = collect(channel);
  const {socket: publisher} = await connectClient(t, server.port);
  const disconnects = collect(socket.listener('disconnect'));
  const connects = collect(socket.listener('connect'));

  const cut = Date.now();
  assert.equal(await proxy.command('cut'), '1');
  const dis = await disconnects.next(5000, "'disconnect' after the cut");
  assert.equal(dis.code, 1006, `abnormal closure, got ${dis.code}`);
  assert.ok(Date.now() - cut < PING_TIMEOUT, 'a reset needs no ping timeout');
  await connects.next(MAX_DELAY + SLACK, "'connect' after the cut");
  await delivered(publisher, received, ch, 'after cut');
});
