// Recovery, history and presence against a real `herald serve`
// (herald-fixture's hist: and tiny: namespaces): recovered and live
// publications through one iterator in order, recovery across a dropped
// connection and across a SIGKILLed and restarted server (with a private
// Redis keeping the history), gaps reported when history cannot help,
// positions saved and resumed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeraldClient, MemoryTokenStore } from '../../dist/index.js';
import { startHerald, startRedis, take, within } from '../lib/server.mjs';

function client(t, url, extra = {}) {
  const c = new HeraldClient({ url, tokenStore: new MemoryTokenStore(), reconnect: { initialDelay: 100, maxDelay: 300 }, ...extra });
  t.after(() => c.close());
  return c;
}

const once = (c, ev) => new Promise((res) => c.on(ev, res));
const datas = (ps) => ps.map((p) => p.data);

test('positions on a channel with history; history reads', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  const sub = c.subscribe('hist:pos');
  const top = await sub.ready;
  assert.equal(top.offset, 0);
  assert.match(top.epoch, /^[A-Za-z0-9_-]{8}$/);
  for (let i = 1; i <= 5; i++) await c.publish('hist:pos', i);
  const got = await take(sub, 5);
  assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5]);
  assert.deepEqual(sub.position, { offset: 5, epoch: top.epoch });
  const latest = await c.history('hist:pos', { limit: 2 });
  assert.deepEqual(latest.publications, [{ offset: 4, data: 4 }, { offset: 5, data: 5 }]);
  assert.equal(latest.offset, 5);
  const after = await c.history('hist:pos', { since: { offset: 3, epoch: top.epoch } });
  assert.deepEqual(after.publications.map((p) => p.data), [4, 5]);
  await assert.rejects(c.history('news'), { name: 'NotAvailableError' });
  await assert.rejects(c.history('hist:pos', { since: { offset: 1, epoch: 'XXXXXXXX' } }), { name: 'UnrecoverablePositionError' });
});

test('a dropped connection: what was published meanwhile arrives first, in order, then live', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url, { reconnect: { initialDelay: 400, maxDelay: 400 } });
  const pub = client(t, server.url);
  const sub = c.subscribe('hist:drop');
  await sub.ready;
  await pub.publish('hist:drop', 1);
  await take(sub, 1);
  const down = once(c, 'disconnect');
  // Away for at least a second (the server's retry hint), whatever the jitter.
  c.invoke('disconnectMe', { code: 1013, reason: 'retry after 1' }).catch(() => {});
  await down;
  // Published while c is away.
  for (let i = 2; i <= 6; i++) await pub.publish('hist:drop', i);
  const back = once(sub.events, 'subscribed');
  await within(5000, 'resubscribed', back);
  for (let i = 7; i <= 8; i++) await pub.publish('hist:drop', i);
  const got = await take(sub, 7);
  assert.deepEqual(datas(got), [2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(got.map((p) => p.offset), [2, 3, 4, 5, 6, 7, 8]);
  assert.ok(got.every((p) => p.gap === undefined));
});

test('SIGKILL and restart with a persistent broker: every publication recovered', async (t) => {
  const redis = await startRedis(t);
  const server = await startHerald(t, { args: ['--broker', redis.url] });
  const c = client(t, server.url, { reconnect: { initialDelay: 300, maxDelay: 600 } });
  const sub = c.subscribe('hist:crash');
  await sub.ready;
  const p1 = client(t, server.url);
  await p1.publish('hist:crash', 'before');
  await take(sub, 1);
  p1.close();
  const down = once(c, 'disconnect');
  await server.kill();
  await down;
  await server.restart();
  // Published on the restarted server before c comes back.
  const p2 = client(t, server.url);
  await p2.publish('hist:crash', 'meanwhile-1');
  await p2.publish('hist:crash', 'meanwhile-2');
  await within(10000, 'resubscribed', once(sub.events, 'subscribed'));
  await p2.publish('hist:crash', 'live');
  const got = await take(sub, 3, 10000);
  assert.deepEqual(datas(got), ['meanwhile-1', 'meanwhile-2', 'live']);
  assert.deepEqual(got.map((p) => p.offset), [2, 3, 4]);
});

test('SIGKILL and restart with the memory broker: the lost history is reported as a gap', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  const sub = c.subscribe('hist:lost');
  const gaps = [];
  c.on('gap', (g) => gaps.push(g));
  await sub.ready;
  await c.publish('hist:lost', 1);
  await take(sub, 1);
  const before = sub.position;
  const gap = new Promise((res) => sub.on('gap', res));
  await server.restart();
  const g = await within(10000, 'gap', gap);
  assert.equal(g.cause, 'notRecovered');
  assert.deepEqual(g.last, before);
  assert.notEqual(g.resume.epoch, before.epoch);
  await c.publish('hist:lost', 2);
  const [p] = await take(sub, 1);
  assert.equal(p.data, 2);
  assert.equal(p.offset, 1);
  assert.deepEqual(p.gap, g, 'the first publication after the gap carries it');
  assert.equal(gaps.length, 1);
});

test('more missed than the history keeps: a gap, then live', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url, { reconnect: { initialDelay: 400, maxDelay: 400 } });
  const pub = client(t, server.url);
  const sub = c.subscribe('tiny:t');
  await sub.ready;
  await pub.publish('tiny:t', 1);
  await take(sub, 1);
  const down = once(c, 'disconnect');
  // Away for at least a second (the server's retry hint), whatever the jitter.
  c.invoke('disconnectMe', { code: 1013, reason: 'retry after 1' }).catch(() => {});
  await down;
  for (let i = 2; i <= 7; i++) await pub.publish('tiny:t', i);
  const gap = await within(5000, 'gap', new Promise((res) => sub.on('gap', res)));
  assert.equal(gap.cause, 'notRecovered');
  assert.deepEqual(gap.resume.offset, 7);
  await pub.publish('tiny:t', 8);
  const [p] = await take(sub, 1);
  assert.equal(p.data, 8);
  assert.equal(p.gap.cause, 'notRecovered');
});

test('since: resume from a saved position after the client restarted', async (t) => {
  const server = await startHerald(t);
  const first = client(t, server.url);
  const sub = first.subscribe('hist:saved');
  await sub.ready;
  for (let i = 1; i <= 3; i++) await first.publish('hist:saved', i);
  await take(sub, 3);
  const saved = sub.position;
  first.close();
  const pub = client(t, server.url);
  await pub.publish('hist:saved', 4);
  await pub.publish('hist:saved', 5);
  const second = client(t, server.url);
  const resumed = second.subscribe('hist:saved', { since: saved });
  assert.deepEqual(datas(await take(resumed, 2)), [4, 5]);
});

test('presence, presenceStats, join and leave', async (t) => {
  const server = await startHerald(t);
  const a = client(t, server.url);
  const login = once(a, 'authenticate');
  await a.invoke('login', { user: 'ada' });
  await login;
  const room = a.subscribe('hist:room');
  await room.ready;
  const joined = new Promise((res) => room.on('join', res));
  const b = client(t, server.url);
  const broom = b.subscribe('hist:room');
  await broom.ready;
  const j = await within(5000, 'join', joined);
  assert.equal(j.client, b.id);
  assert.equal(j.user, null);
  const who = await a.presence('hist:room');
  assert.deepEqual(Object.keys(who).sort(), [a.id, b.id].sort());
  assert.equal(who[a.id].user, 'ada');
  assert.deepEqual(await a.presenceStats('hist:room'), { clients: 2, users: 1 });
  const left = new Promise((res) => a.on('leave', res));
  const bid = b.id;
  broom.unsubscribe();
  assert.equal((await within(5000, 'leave', left)).client, bid);
  await assert.rejects(a.presence('news'), { name: 'NotAvailableError' });
});
