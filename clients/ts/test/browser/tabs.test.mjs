// Browser tests: Debian's chromium (playwright-core), several tabs of one
// browser context against a real `herald serve` (herald-fixture), the test
// page served from its own loopback origin.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join } from 'node:path';
import { HeraldClient, MemoryTokenStore } from '../../dist/index.js';
import { REFUSED, launch, serveStatic, watchPage } from '../lib/browser.mjs';
import { REPO, startHerald, startRedis, until, within } from '../lib/server.mjs';

const ROOT = join(REPO, 'clients', 'ts');

async function openTabs(t, context, origin, server, n, params = {}, ignore = []) {
  const pages = [];
  const errors = [];
  for (let i = 0; i < n; i++) {
    const page = await context.newPage();
    errors.push(watchPage(page, `tab ${i}`, ignore));
    const q = new URLSearchParams({ url: server.url, ...params });
    await page.goto(`${origin}/test/browser/page.html?${q}`);
    await page.waitForFunction(() => window.t && window.t.client.state === 'open', null, { timeout: 10000 });
    pages.push(page);
  }
  pages.errors = errors;
  return pages;
}

/** No errors in the pages; checked at the end of each test, while the server is still up. */
function noErrors(...groups) {
  assert.deepEqual(groups.flatMap((g) => g.errors.flat()), [], 'no errors in the pages');
}

test('token sync: login in tab A authenticates tab B within a second; logout in B logs out A', async (t) => {
  const server = await startHerald(t);
  const origin = await serveStatic(t, ROOT, ['dist', 'test']);
  const browser = await launch(t);
  const context = await browser.newContext();
  const tabs = await openTabs(t, context, origin, server, 2);
  const [a, b] = tabs;
  assert.equal(await a.evaluate(() => t.mode), 'HeraldClient');
  const loggedIn = await a.evaluate(async () => {
    await t.client.invoke('login', { user: 'ada' });
    return Date.now();
  });
  // Measured in the pages (one clock: the same browser), not by the test's polling.
  await b.waitForFunction(() => t.auth.some((e) => e.in === 'ada'), null, { timeout: 5000 });
  const bAt = await b.evaluate(() => t.auth.find((e) => e.in === 'ada').at);
  assert.ok(bAt - loggedIn < 1000, `tab B authenticated ${bAt - loggedIn} ms after the login`);
  t.diagnostic(`tab B authenticated ${bAt - loggedIn} ms after tab A's login`);
  assert.equal((await b.evaluate(() => t.whoami())).sub, 'ada', 'the server sees tab B authenticated');
  const loggedOut = await b.evaluate(async () => {
    await t.client.deauthenticate();
    return Date.now();
  });
  await a.waitForFunction(() => t.auth.some((e) => e.out), null, { timeout: 5000 });
  const aAt = await a.evaluate(() => t.auth.find((e) => e.out).at);
  assert.ok(aAt - loggedOut < 1000, `tab A logged out ${aAt - loggedOut} ms after tab B`);
  t.diagnostic(`tab A logged out ${aAt - loggedOut} ms after tab B's logout`);
  assert.equal(await a.evaluate(() => t.whoami()), null);
  assert.equal(await a.evaluate(() => localStorage.getItem('herald.authToken')), null);
  noErrors(tabs);
});

test('shared socket: one connection for three tabs, each gets its publications; closing the opener loses nothing', async (t) => {
  const server = await startHerald(t);
  const origin = await serveStatic(t, ROOT, ['dist', 'test']);
  const browser = await launch(t);
  const context = await browser.newContext();
  const tabs = await openTabs(t, context, origin, server, 3, { shared: '1', name: `w${Math.random()}` });
  assert.equal(await tabs[0].evaluate(() => t.mode), 'SharedClient');
  assert.equal(await server.clients(), 1, 'the server sees one connection for three tabs');
  for (const p of tabs) await p.evaluate(() => t.subscribe('hist:tabs'));
  for (let i = 0; i < 3; i++) await tabs[i].evaluate((i) => t.client.publish('hist:tabs', `tab ${i}`), i);
  for (const p of tabs) {
    await p.waitForFunction(() => t.got['hist:tabs'].length === 3, null, { timeout: 5000 });
    assert.deepEqual(await p.evaluate(() => t.got['hist:tabs']), ['tab 0', 'tab 1', 'tab 2']);
  }
  // Replies go to the tab that asked.
  assert.deepEqual(await Promise.all(tabs.map((p, i) => p.evaluate((i) => t.client.invoke('echo', i), i))), [0, 1, 2]);
  // The tab that opened the worker closes.
  await tabs[0].close({ runBeforeUnload: true });
  const publisher = new HeraldClient({ url: server.url, tokenStore: new MemoryTokenStore() });
  t.after(() => publisher.close());
  await publisher.publish('hist:tabs', 'after the opener closed');
  for (const p of tabs.slice(1)) {
    await p.waitForFunction(() => t.got['hist:tabs'].length === 4, null, { timeout: 5000 });
    assert.equal(await p.evaluate(() => t.got['hist:tabs'][3]), 'after the opener closed');
  }
  assert.equal(await server.clients(), 2, 'still one socket for the tabs (plus the publisher)');
  assert.equal(await tabs[1].evaluate(() => t.client.state), 'open');
  noErrors(tabs);
});

test('the server killed and restarted: every tab reconnects and recovers what was published meanwhile', async (t) => {
  const redis = await startRedis(t);
  const server = await startHerald(t, { args: ['--broker', redis.url] });
  const origin = await serveStatic(t, ROOT, ['dist', 'test']);
  const browser = await launch(t);
  const context = await browser.newContext();
  // Two tabs sharing a worker and one with its own socket, reconnecting after about a second.
  const sharedTabs = await openTabs(t, context, origin, server, 2, { shared: '1', name: `k${Math.random()}`, delay: '1500' }, [REFUSED]);
  const ownTabs = await openTabs(t, context, origin, server, 1, { delay: '1500' }, [REFUSED]);
  const [own] = ownTabs;
  const tabs = [...sharedTabs, own];
  for (const p of tabs) await p.evaluate(() => t.subscribe('hist:restart'));
  const publisher = new HeraldClient({ url: server.url, tokenStore: new MemoryTokenStore(), reconnect: { initialDelay: 50, maxDelay: 100 } });
  t.after(() => publisher.close());
  await publisher.publish('hist:restart', 'before');
  for (const p of tabs) await p.waitForFunction(() => t.got['hist:restart'].length === 1, null, { timeout: 5000 });
  await server.kill();
  for (const p of tabs) await p.waitForFunction(() => t.client.state !== 'open', null, { timeout: 5000 });
  await server.restart();
  await within(5000, 'publisher back', publisher.ready());
  await publisher.publish('hist:restart', 'meanwhile 1');
  await publisher.publish('hist:restart', 'meanwhile 2');
  for (const p of tabs) await p.waitForFunction(() => t.client.state === 'open', null, { timeout: 10000 });
  await publisher.publish('hist:restart', 'live');
  for (const p of tabs) {
    await p.waitForFunction(() => t.got['hist:restart'].length === 4, null, { timeout: 10000 });
    assert.deepEqual(await p.evaluate(() => t.got['hist:restart']), ['before', 'meanwhile 1', 'meanwhile 2', 'live']);
    assert.deepEqual(await p.evaluate(() => t.gaps), []);
  }
  await until(5000, 'two sockets for the tabs, one for the publisher', async () => (await server.clients()) === 3);
  noErrors(sharedTabs, ownTabs);
});

test('where SharedWorker is missing, shared mode falls back to one socket per tab with token sync', async (t) => {
  const server = await startHerald(t);
  const origin = await serveStatic(t, ROOT, ['dist', 'test']);
  const browser = await launch(t);
  const context = await browser.newContext();
  await context.addInitScript(() => {
    delete window.SharedWorker;
  });
  const tabs = await openTabs(t, context, origin, server, 2, { shared: '1' });
  const [a, b] = tabs;
  assert.equal(await a.evaluate(() => t.mode), 'HeraldClient');
  assert.equal(await server.clients(), 2);
  const loggedIn = await a.evaluate(async () => {
    await t.client.invoke('login', { user: 'ada' });
    return Date.now();
  });
  await b.waitForFunction(() => t.auth.some((e) => e.in === 'ada'), null, { timeout: 5000 });
  const bAt = await b.evaluate(() => t.auth.find((e) => e.in === 'ada').at);
  assert.ok(bAt - loggedIn < 1000, `tab B authenticated ${bAt - loggedIn} ms after the login`);
  for (const p of [a, b]) await p.evaluate(() => t.subscribe('hist:fallback'));
  await b.evaluate(() => t.client.publish('hist:fallback', 'both'));
  for (const p of [a, b]) await p.waitForFunction(() => t.got['hist:fallback'][0] === 'both', null, { timeout: 5000 });
  noErrors(tabs);
});
