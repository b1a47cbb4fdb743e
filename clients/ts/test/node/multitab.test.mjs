// Multi-tab behaviour in Node against a real `herald serve`: token sync
// between "tabs" (clients with their own BrowserTokenStore over one
// origin's storage and BroadcastChannel), and the shared-worker hub driven
// over MessageChannels (one server connection for three tabs, one server
// subscription per channel, each tab its own replies, closed tabs noticed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrowserTokenStore, HeraldClient, SharedClient } from '../../dist/index.js';
import { Hub } from '../../dist/worker.js';
import { startHerald, take, until, within } from '../lib/server.mjs';

class FakeStorage {
  #m = new Map();
  getItem(k) {
    return this.#m.has(k) ? this.#m.get(k) : null;
  }
  setItem(k, v) {
    this.#m.set(k, String(v));
  }
  removeItem(k) {
    this.#m.delete(k);
  }
}

const once = (c, ev) => new Promise((res) => c.on(ev, res));

test('token sync: login in one tab authenticates the others within a second; logout anywhere logs out all', async (t) => {
  const server = await startHerald(t);
  const storage = new FakeStorage();
  const key = `tok${Math.random()}`;
  const tabs = [0, 1, 2].map(() => {
    const c = new HeraldClient({ url: server.url, tokenStore: new BrowserTokenStore({ storage, key }) });
    t.after(() => c.close());
    return c;
  });
  await Promise.all(tabs.map((c) => c.ready()));
  const others = tabs.slice(1).map((c) => once(c, 'authenticate'));
  const start = Date.now();
  await tabs[0].invoke('login', { user: 'ada' });
  await within(1000, 'the other tabs authenticated', Promise.all(others));
  assert.ok(Date.now() - start < 1000);
  for (const c of tabs) assert.equal((await c.invoke('whoami')).sub, 'ada');
  // A renewed token reaches the others.
  const renewed = tabs.slice(0, 2).map((c) => once(c, 'authenticate'));
  await tabs[2].invoke('login', { user: 'ada', ttl: 3600 });
  const [r0] = await within(1000, 'renewal', Promise.all(renewed));
  assert.equal(r0.token, storage.getItem(key));
  assert.equal(tabs[0].authToken, tabs[2].authToken);
  const out = tabs.slice(0, 2).map((c) => once(c, 'deauthenticate'));
  await tabs[2].deauthenticate();
  await within(1000, 'logged out everywhere', Promise.all(out));
  for (const c of tabs) assert.equal(await c.invoke('whoami'), null);
  assert.equal(storage.getItem(key), null);
});

function hubTabs(t, server, n) {
  const hub = new Hub({ pingInterval: 100, portTimeout: 400 });
  t.after(() => hub.close());
  const storage = new FakeStorage();
  const key = `hub${Math.random()}`;
  const tabs = [];
  for (let i = 0; i < n; i++) {
    const { port1, port2 } = new MessageChannel();
    hub.attach(port2);
    const c = new SharedClient({ url: server.url, tokenStore: new BrowserTokenStore({ storage, key }) }, { port: port1 });
    t.after(() => c.close());
    tabs.push({ c, port: port1 });
  }
  return { hub, tabs, storage, key };
}

test('shared hub: one connection for three tabs, each its own publications and replies', async (t) => {
  const server = await startHerald(t);
  const { hub, tabs } = hubTabs(t, server, 3);
  await Promise.all(tabs.map(({ c }) => within(5000, 'open', c.ready())));
  assert.equal(await server.clients(), 1, 'one socket for the three tabs');
  const subs = tabs.map(({ c }) => c.subscribe('hist:shared'));
  await Promise.all(subs.map((s) => s.ready));
  assert.equal(hub.channelCount, 1);
  for (let i = 0; i < 3; i++) await tabs[i].c.publish('hist:shared', `from ${i}`);
  for (const s of subs) assert.deepEqual((await take(s, 3)).map((p) => p.data), ['from 0', 'from 1', 'from 2']);
  const replies = await Promise.all(tabs.map(({ c }, i) => c.invoke('echo', i)));
  assert.deepEqual(replies, [0, 1, 2]);
  await assert.rejects(tabs[1].c.invoke('fail'), { name: 'MyError' });
  // Server transmit and invoke reach the tab that asked for them.
  const told = new Promise((res) => tabs[2].c.receive('told', res));
  tabs[2].c.transmit('tell', 'x');
  assert.equal(await within(5000, 'told', told), 'x');
  tabs[1].c.handle('who', () => 'tab 1');
  assert.equal(await tabs[0].c.invoke('serverInvoke', { procedure: 'who', data: null }), 'tab 1');
  // History and presence through the worker.
  assert.equal((await tabs[0].c.history('hist:shared')).publications.length, 3);
  assert.deepEqual(await tabs[0].c.presenceStats('hist:shared'), { clients: 1, users: 0 });
});

test('shared hub: what a tab asks before its hello is answered (subscribe, invoke, presence at once)', async (t) => {
  const server = await startHerald(t);
  const { tabs } = hubTabs(t, server, 1);
  const { c } = tabs[0];
  const sub = c.subscribe('hist:early');
  const echoed = c.invoke('echo', 'early');
  assert.deepEqual(await within(5000, 'subscribed', sub.ready), { offset: 0, epoch: (await sub.ready).epoch });
  assert.equal(await echoed, 'early');
  assert.deepEqual(Object.values(await c.presence('hist:early')), [{ user: null, info: null }]);
});

test('shared hub: the first tab closing loses nothing; a silent tab is dropped and its channels released', async (t) => {
  const server = await startHerald(t);
  const { hub, tabs } = hubTabs(t, server, 3);
  await Promise.all(tabs.map(({ c }) => c.ready()));
  const subs = tabs.map(({ c }) => c.subscribe('hist:stay'));
  await Promise.all(subs.map((s) => s.ready));
  const only = tabs[1].c.subscribe('hist:only-one');
  await only.ready;
  assert.equal(hub.channelCount, 2);
  tabs[0].c.close(); // says bye
  await until(2000, 'tab 0 gone', () => hub.tabCount === 2);
  await tabs[2].c.publish('hist:stay', 'after close');
  assert.equal((await take(subs[1], 1))[0].data, 'after close');
  assert.equal((await take(subs[2], 1))[0].data, 'after close');
  assert.equal(await server.clients(), 1);
  // Tab 1 vanishes without a word (a crashed page): the pings notice it.
  tabs[1].port.onmessage = null;
  tabs[1].port.close();
  await until(3000, 'silent tab dropped', () => hub.tabCount === 1);
  assert.equal(hub.channelCount, 1, 'hist:only-one unsubscribed');
  assert.deepEqual(await tabs[2].c.presenceStats('hist:only-one'), { clients: 0, users: 0 });
});

test('shared hub: login in one tab authenticates every tab; logout in another logs out all', async (t) => {
  const server = await startHerald(t);
  const { tabs, storage, key } = hubTabs(t, server, 2);
  await Promise.all(tabs.map(({ c }) => c.ready()));
  const b = once(tabs[1].c, 'authenticate');
  await tabs[0].c.invoke('login', { user: 'ada' });
  assert.equal((await within(1000, 'tab B authenticated', b)).claims.sub, 'ada');
  assert.ok(storage.getItem(key));
  // A reconnect is no logout: every tab stays logged in.
  const back = once(tabs[0].c, 'connect');
  const lost = [];
  tabs.forEach(({ c }) => c.on('deauthenticate', () => lost.push(c)));
  await tabs[0].c.invoke('disconnectMe', { code: 4500, reason: 'test' });
  assert.equal((await within(5000, 'reconnected', back)).isAuthenticated, true);
  assert.deepEqual(lost, []);
  assert.ok(storage.getItem(key), 'the token is still stored');
  assert.equal((await tabs[1].c.invoke('whoami')).sub, 'ada');
  const a = once(tabs[0].c, 'deauthenticate');
  await tabs[1].c.deauthenticate();
  await within(1000, 'tab A logged out', a);
  assert.equal(await tabs[0].c.invoke('whoami'), null);
  assert.equal(storage.getItem(key), null);
});

test('shared hub: the server killed and restarted, every tab recovers', async (t) => {
  const server = await startHerald(t);
  const { tabs } = hubTabs(t, server, 2);
  await Promise.all(tabs.map(({ c }) => c.ready()));
  const subs = tabs.map(({ c }) => c.subscribe('hist:kill'));
  await Promise.all(subs.map((s) => s.ready));
  await tabs[0].c.publish('hist:kill', 1);
  for (const s of subs) await take(s, 1);
  const gaps = subs.map((s) => new Promise((res) => s.on('gap', res)));
  await server.restart();
  // The memory broker lost the history: each tab is told, then live goes on.
  for (const g of await within(15000, 'gaps', Promise.all(gaps))) assert.equal(g.cause, 'notRecovered');
  await tabs[1].c.publish('hist:kill', 2);
  for (const s of subs) assert.equal((await take(s, 1))[0].data, 2);
});

test('shared mode: a worker that never answers does not leave the tab waiting for ever', async (t) => {
  // A port whose other end is nobody: the hub is gone.
  const { port1 } = new MessageChannel();
  const c = new SharedClient({ url: 'ws://127.0.0.1:9/socketcluster/', ackTimeout: 100, tokenStore: new BrowserTokenStore({ storage: new FakeStorage(), key: `x${Math.random()}` }) }, { port: port1 });
  t.after(() => c.close());
  const start = Date.now();
  await assert.rejects(c.invoke('echo', 1), { name: 'TimeoutError' });
  assert.ok(Date.now() - start >= 100);
});

test('shared hub: a connection closed for good (1000) ends the tabs\' subscriptions; the next tab gets a new one', async (t) => {
  const server = await startHerald(t);
  const { hub, tabs } = hubTabs(t, server, 1);
  const { c } = tabs[0];
  await c.ready();
  const sub = c.subscribe('hist:final');
  await sub.ready;
  const closed = new Promise((res) => c.on('state', (s) => s === 'closed' && res()));
  c.invoke('disconnectMe', { code: 1000, reason: 'done' }).catch(() => {});
  await within(5000, 'closed', closed);
  const it = sub[Symbol.asyncIterator]();
  assert.equal((await within(5000, 'the subscription ends', it.next())).done, true);
  const { port1, port2 } = new MessageChannel();
  hub.attach(port2);
  const fresh = new SharedClient({ url: server.url, tokenStore: new BrowserTokenStore({ storage: new FakeStorage(), key: 'k' }) }, { port: port1 });
  t.after(() => fresh.close());
  await within(5000, 'a new connection', fresh.ready());
  assert.equal(await fresh.invoke('echo', 'again'), 'again');
  assert.equal(await server.clients(), 1);
});
