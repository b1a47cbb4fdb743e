// The client against the real socketcluster-server 20
// (tests/node/reference/sc-server.js, the fixture's twin): what that
// protocol has works the same; Herald's extension simply never shows up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeraldClient, MemoryTokenStore } from '../../dist/index.js';
import { startReference, take, within } from '../lib/server.mjs';

test('socketcluster-server 20: pub/sub, RPC, transmit, server invoke, auth, reconnect', async (t) => {
  const server = await startReference(t);
  const store = new MemoryTokenStore();
  const c = new HeraldClient({ url: server.url, tokenStore: store, reconnect: { initialDelay: 50, maxDelay: 200 } });
  t.after(() => c.close());
  await within(5000, 'open', c.ready());
  assert.ok(c.id);
  const sub = c.subscribe('news');
  assert.equal(await sub.ready, null);
  await c.publish('news', { n: 1 });
  c.publish('news', { n: 2 }, { ack: false });
  const got = await take(sub, 2);
  assert.deepEqual(got.map((p) => p.data.n), [1, 2]);
  assert.equal(got[0].offset, undefined);
  assert.equal(await c.invoke('echo', 'hi'), 'hi');
  await assert.rejects(c.invoke('fail'), { name: 'MyError' });
  const told = new Promise((res) => c.receive('told', res));
  c.transmit('tell', 7);
  assert.equal(await within(5000, 'told', told), 7);
  c.handle('double', (n) => n * 2);
  assert.equal(await c.invoke('serverInvoke', { procedure: 'double', data: 4 }), 8);
  const authed = new Promise((res) => c.on('authenticate', res));
  await c.invoke('login', { user: 'ada' });
  assert.equal((await within(5000, 'token', authed)).claims.sub, 'ada');
  assert.ok(store.load());
  const back = new Promise((res) => c.on('connect', res));
  await c.invoke('disconnectMe', { code: 4321, reason: 'again' });
  assert.equal((await within(5000, 'reconnect', back)).isAuthenticated, true);
  assert.equal((await c.invoke('whoami')).sub, 'ada');
  await c.publish('news', { n: 3 });
  assert.equal((await take(sub, 1))[0].data.n, 3, 'resubscribed after the reconnect');
  const gone = new Promise((res) => c.on('deauthenticate', res));
  await c.invoke('logout');
  await within(5000, 'logout', gone);
  assert.equal(store.load(), null);
});
