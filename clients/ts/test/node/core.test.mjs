// The client in Node against a real `herald serve` (herald-fixture):
// connect, pub/sub through `for await`, publish with and without ack,
// invoke with timeout, transmit, server-initiated invoke and transmit,
// state events, authentication, kick-out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeraldClient, MemoryTokenStore, RemoteError, TimeoutError } from '../../dist/index.js';
import { startHerald, take, within } from '../lib/server.mjs';

function client(t, server, extra = {}) {
  const c = new HeraldClient({ url: server.url, tokenStore: new MemoryTokenStore(), reconnect: { initialDelay: 50, maxDelay: 200 }, ...extra });
  t.after(() => c.close());
  return c;
}

test('connects, reports its states, and closes for good', async (t) => {
  const server = await startHerald(t);
  const c = new HeraldClient({ url: server.url, tokenStore: new MemoryTokenStore(), autoConnect: false });
  const states = [];
  c.on('state', (s) => states.push(s));
  assert.equal(c.state, 'closed');
  c.connect();
  await within(5000, 'open', c.ready());
  assert.equal(c.state, 'open');
  assert.match(c.id, /^[A-Za-z0-9_-]{20}$/);
  assert.equal(await server.clients(), 1);
  c.close();
  assert.deepEqual(states, ['connecting', 'open', 'closed']);
  await assert.rejects(c.invoke('echo', 1), { name: 'BadConnectionError' });
});

test('subscribe with for await; publish with and without ack', async (t) => {
  const server = await startHerald(t);
  const a = client(t, server);
  const b = client(t, server);
  const sub = a.subscribe('news');
  assert.equal(await within(5000, 'subscribed', sub.ready), null, 'no position on a channel without history');
  await b.publish('news', { n: 1 });
  b.publish('news', { n: 2 }, { ack: false });
  await b.publish('news', { n: 3 });
  const got = [];
  for await (const msg of sub) {
    got.push(msg.data.n);
    assert.equal(msg.channel, 'news');
    if (got.length === 3) break; // ends the subscription
  }
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(sub.active, false);
});

test('several subscriptions to one channel share one server subscription', async (t) => {
  const server = await startHerald(t);
  const a = client(t, server);
  const s1 = a.subscribe('shared');
  const s2 = a.subscribe('shared');
  await Promise.all([s1.ready, s2.ready]);
  await a.publish('shared', 'x');
  assert.deepEqual((await take(s1, 1)).map((p) => p.data), ['x']);
  assert.deepEqual((await take(s2, 1)).map((p) => p.data), ['x']);
  s1.unsubscribe();
  await a.publish('shared', 'y');
  assert.deepEqual((await take(s2, 1)).map((p) => p.data), ['y']);
});

test('invoke: reply, remote error, unknown procedure, timeout', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server);
  assert.deepEqual(await c.invoke('echo', { x: [1, 'two'] }), { x: [1, 'two'] });
  await assert.rejects(c.invoke('fail'), (e) => e instanceof RemoteError && e.name === 'MyError' && e.message === 'nope');
  await assert.rejects(c.invoke('nothingHere'), { name: 'NoSuchProcedureError' });
  // serverInvoke waits for our handler, which never answers in time.
  c.handle('slow', () => new Promise(() => {}));
  await assert.rejects(c.invoke('serverInvoke', { procedure: 'slow', data: 1 }, { timeout: 200 }), (e) => e instanceof TimeoutError);
});

test('transmit, and the server transmitting and invoking the client', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server);
  const told = new Promise((res) => c.receive('told', res));
  c.transmit('tell', { hi: 1 });
  assert.deepEqual(await within(5000, 'told', told), { hi: 1 });
  const pushed = new Promise((res) => c.receive('news-flash', res));
  await c.invoke('serverTransmit', { event: 'news-flash', data: 'extra' });
  assert.equal(await within(5000, 'server transmit', pushed), 'extra');
  c.handle('double', (n) => n * 2);
  assert.equal(await c.invoke('serverInvoke', { procedure: 'double', data: 21 }), 42);
  c.handle('refuse', () => {
    throw Object.assign(new Error('not today'), { name: 'NopeError' });
  });
  await assert.rejects(c.invoke('serverInvoke', { procedure: 'refuse', data: 0 }), { name: 'NopeError', message: 'not today' });
});

test('authentication: login issues a token, it survives a reconnect, logout drops it', async (t) => {
  const server = await startHerald(t);
  const store = new MemoryTokenStore();
  const c = client(t, server, { tokenStore: store });
  await c.ready();
  await assert.rejects(c.subscribe('private/room').ready, { name: 'ForbiddenError' });
  const authed = new Promise((res) => c.on('authenticate', res));
  await c.invoke('login', { user: 'ada' });
  const { token, claims } = await within(5000, 'authenticate', authed);
  assert.equal(claims.sub, 'ada');
  assert.equal(store.load(), token);
  assert.equal(c.isAuthenticated, true);
  assert.equal(c.claims.sub, 'ada');
  const room = c.subscribe('private/room');
  await room.ready;
  // The server drops the connection: the client reconnects with the token and resubscribes.
  const back = new Promise((res) => c.on('connect', res));
  await c.invoke('disconnectMe', { code: 4321, reason: 'bye' });
  assert.equal((await within(5000, 'reconnect', back)).isAuthenticated, true);
  assert.equal((await c.invoke('whoami')).sub, 'ada');
  await room.ready;
  await c.publish('private/room', 'after');
  assert.equal((await take(room, 1))[0].data, 'after');
  const gone = new Promise((res) => c.on('deauthenticate', res));
  await c.invoke('logout');
  await within(5000, 'deauthenticate', gone);
  assert.equal(store.load(), null);
  assert.equal(await c.invoke('whoami'), null);
});

test('authenticate() with a token issued elsewhere, deauthenticate()', async (t) => {
  const server = await startHerald(t);
  const issuer = client(t, server);
  const got = new Promise((res) => issuer.on('authenticate', res));
  await issuer.invoke('login', { user: 'bob' });
  const { token } = await got;
  const c = client(t, server);
  await c.ready();
  assert.equal(await c.authenticate(token), true);
  assert.equal((await c.invoke('whoami')).sub, 'bob');
  await c.deauthenticate();
  assert.equal(await c.invoke('whoami'), null);
  await assert.rejects(c.authenticate('not-a-jwt'), { name: 'AuthTokenInvalidError' });
});

test('a kick-out ends the subscription', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server);
  const sub = c.subscribe('room');
  await sub.ready;
  const kicked = new Promise((res) => sub.on('kicked', res));
  await c.invoke('kick', { channel: 'room', message: 'out' });
  assert.equal(await within(5000, 'kicked', kicked), 'out');
  const it = sub[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, true);
});

test('requests made while connecting wait for the connection', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server);
  assert.notEqual(c.state, 'open');
  assert.equal(await c.invoke('echo', 'early'), 'early');
});
