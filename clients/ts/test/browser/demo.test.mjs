// The demo page of `herald serve --dev`, in two tabs of one browser
// context: log in as a name (the other tab shows it within a second),
// chat across the tabs, presence, a dropped connection (1013 "retry after
// 3") and the recovery of what was said meanwhile, logout in one tab logging
// out the other; and a screenshot (docs/demo.png with
// UPDATE_DEMO_SCREENSHOT=1).
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HeraldClient, MemoryTokenStore } from '../../dist/index.js';
import { launch, watchPage } from '../lib/browser.mjs';
import { REPO, startHerald } from '../lib/server.mjs';

const text = (page, id) => page.locator(`#${id}`).textContent();

test('the demo page works end to end in two tabs', async (t) => {
  const server = await startHerald(t, { kind: 'plain', args: ['--dev'] });
  const browser = await launch(t);
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
  const errors = [];
  const open = async (name) => {
    const page = await context.newPage();
    errors.push(watchPage(page, name));
    await page.goto(`${server.http}/`);
    await page.locator('#state', { hasText: 'connected' }).waitFor({ timeout: 10000 });
    return page;
  };
  const a = await open('tab A');
  const b = await open('tab B');
  assert.equal(await text(a, 'user'), '', 'nobody logged in');
  assert.match(await text(a, 'mode'), /shared by every tab/);
  assert.equal(await server.clients(), 1, 'one socket for both tabs');

  await a.fill('#login-name', 'ada');
  const loggedIn = Date.now();
  await a.click('#login');
  await a.locator('#user', { hasText: 'ada' }).waitFor({ timeout: 5000 });
  // (The one-second bound is measured in tabs.test.mjs; here the page just shows it.)
  await b.locator('#user', { hasText: 'ada' }).waitFor({ timeout: 3000 });
  assert.ok(Date.now() - loggedIn < 5000);
  await b.locator('#presence li', { hasText: 'ada' }).waitFor({ timeout: 5000 });

  await a.fill('#message', 'hello from tab A');
  await a.click('#send');
  await b.locator('#messages li', { hasText: 'hello from tab A' }).waitFor({ timeout: 5000 });
  await b.fill('#message', 'hi A, this is B');
  await b.press('#message', 'Enter');
  await a.locator('#messages li', { hasText: 'hi A, this is B' }).waitFor({ timeout: 5000 });

  // Someone else talks while the tabs are away for 3 s.
  const token = (await (await fetch(`${server.http}/herald/dev/token`, { method: 'POST', body: JSON.stringify({ name: 'grace' }) })).json()).token;
  const grace = new HeraldClient({ url: server.url, tokenStore: new MemoryTokenStore(token) });
  t.after(() => grace.close());
  await grace.ready();
  await grace.subscribe('demo:lobby').ready;
  await a.click('#drop');
  await a.locator('#state', { hasText: 'reconnecting' }).waitFor({ timeout: 5000 });
  await b.locator('#state', { hasText: 'reconnecting' }).waitFor({ timeout: 5000 });
  await grace.publish('demo:lobby', { user: 'grace', text: 'said while you were away' });
  for (const page of [a, b]) {
    await page.locator('#messages li.recovered', { hasText: 'said while you were away' }).waitFor({ timeout: 10000 });
    await page.locator('#notice', { hasText: 'recovered 1 message' }).waitFor({ timeout: 5000 });
    assert.equal(await text(page, 'state'), 'connected');
  }
  await a.locator('#presence li', { hasText: 'grace' }).waitFor({ timeout: 5000 });

  const shot = join(mkdtempSync(join(tmpdir(), 'herald-demo-')), 'demo.png');
  await a.screenshot({ path: shot });
  assert.ok(statSync(shot).size > 10000, 'a screenshot with something in it');
  if (process.env.UPDATE_DEMO_SCREENSHOT === '1') copyFileSync(shot, join(REPO, 'docs', 'demo.png'));

  await b.click('#logout');
  await a.locator('#user:empty').waitFor({ state: 'attached', timeout: 3000 });
  assert.equal(await text(a, 'user'), '');
  assert.deepEqual(errors.flat(), []);
});

test('the demo page with one socket per tab (?shared=0): login and logout still reach the other tab', async (t) => {
  const server = await startHerald(t, { kind: 'plain', args: ['--dev'] });
  const browser = await launch(t);
  const context = await browser.newContext();
  const pages = [];
  const errors = [];
  for (const name of ['A', 'B']) {
    const page = await context.newPage();
    errors.push(watchPage(page, name));
    await page.goto(`${server.http}/?shared=0`);
    await page.locator('#state', { hasText: 'connected' }).waitFor({ timeout: 10000 });
    pages.push(page);
  }
  const [a, b] = pages;
  assert.match(await text(a, 'mode'), /one socket per tab/);
  assert.equal(await server.clients(), 2);
  await a.fill('#login-name', 'linus');
  await a.click('#login');
  await b.locator('#user', { hasText: 'linus' }).waitFor({ timeout: 5000 });
  await b.click('#logout');
  await a.locator('#user:empty').waitFor({ state: 'attached', timeout: 3000 });
  assert.deepEqual(errors.flat(), []);
});
