// Reconnecting against a real `herald serve`: backoff while the server is
// down, the server's hints (close 1013 `retry after N`, 1012 drain, 1000
// final), the real admission control (503 + Retry-After) and drain (1012 on
// SIGTERM), requests in flight failing instead of hanging, and a silent
// server detected by the ping watchdog.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { HeraldClient, MemoryTokenStore } from '../../dist/index.js';
import { startHerald, within } from '../lib/server.mjs';

function client(t, url, extra = {}) {
  const c = new HeraldClient({ url, tokenStore: new MemoryTokenStore(), reconnect: { initialDelay: 50, maxDelay: 200, drainJitter: 100 }, ...extra });
  t.after(() => c.close());
  return c;
}
const once = (c, ev) => new Promise((res) => c.on(ev, res));

test('a server that was down: reconnects with backoff once it is back', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  const delays = [];
  c.on('reconnecting', (r) => delays.push(r.delay));
  await server.kill();
  await within(5000, 'reconnecting', once(c, 'reconnecting'));
  await server.restart();
  await within(10000, 'back', once(c, 'connect'));
  assert.ok(delays.length >= 1);
  assert.ok(delays.every((d) => d >= 0 && d <= 200), `delays within the cap: ${delays}`);
});

test('close 1013 "retry after 1": waits at least a second', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  const planned = once(c, 'reconnecting');
  const start = Date.now();
  c.invoke('disconnectMe', { code: 1013, reason: 'retry after 1' }).catch(() => {});
  const r = await within(5000, 'reconnecting', planned);
  assert.ok(r.delay >= 1000 && r.delay <= 1200, `delay ${r.delay}`);
  await within(5000, 'back', once(c, 'connect'));
  assert.ok(Date.now() - start >= 1000);
});

test('close 1012 (draining): reconnects at once, within the drain jitter', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  const planned = once(c, 'reconnecting');
  c.invoke('disconnectMe', { code: 1012, reason: 'draining' }).catch(() => {});
  const r = await within(5000, 'reconnecting', planned);
  assert.ok(r.delay <= 100, `delay ${r.delay}`);
  await within(5000, 'back', once(c, 'connect'));
});

test('close 1000 from the server: the client stops', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  const sub = c.subscribe('x');
  await sub.ready;
  const closed = new Promise((res) => c.on('state', (s) => s === 'closed' && res()));
  c.invoke('disconnectMe', { code: 1000, reason: 'done' }).catch(() => {});
  await within(5000, 'closed', closed);
  const it = sub[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, true);
});

test('requests in flight when the connection drops fail with BadConnectionError', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  c.handle('never', () => new Promise(() => {}));
  const inflight = assert.rejects(c.invoke('serverInvoke', { procedure: 'never', data: 0 }), { name: 'BadConnectionError' });
  await server.kill();
  await inflight;
});

test('HTTP 503 with Retry-After on the upgrade (read with ws): waits that long', async (t) => {
  const http = createServer((req, res) => {
    res.writeHead(503, { 'Retry-After': '1' });
    res.end();
  });
  http.on('upgrade', (req, socket) => {
    socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  t.after(() => http.close());
  const c = client(t, `ws://127.0.0.1:${http.address().port}/socketcluster/`);
  const r = await within(5000, 'reconnecting', once(c, 'reconnecting'));
  assert.ok(r.delay >= 1000 && r.delay <= 1200, `delay ${r.delay}`);
});

test('a server that stops pinging: closed with 4000 and reconnected', async (t) => {
  // A fake server: answers the handshake with pingTimeout 300 ms, then says nothing.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  t.after(() => wss.close());
  let connections = 0;
  wss.on('connection', (ws) => {
    connections++;
    ws.on('message', (m) => {
      const f = JSON.parse(String(m));
      if (f.event === '#handshake') ws.send(JSON.stringify({ rid: f.cid, data: { id: `x${connections}`, pingTimeout: 300, isAuthenticated: false } }));
    });
  });
  const c = client(t, `ws://127.0.0.1:${wss.address().port}/socketcluster/`);
  await c.ready();
  const d = await within(5000, 'disconnect', once(c, 'disconnect'));
  assert.equal(d.code, 4000);
  await within(5000, 'second connection', once(c, 'connect'));
  assert.equal(connections, 2);
});

test("Herald's admission control: a node at capacity answers 503 with Retry-After, and the client waits it", async (t) => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'herald-ts-admission-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'herald.toml');
  writeFileSync(config, 'max_connections = 1\nhandshake_rate = 0\n');
  const server = await startHerald(t, { args: ['--config', config] });
  const first = client(t, server.url);
  await first.ready();
  const second = client(t, server.url);
  const r = await within(5000, 'reconnecting', once(second, 'reconnecting'));
  // Far above the client's own 200 ms cap: the server's hint (at least 1 s).
  assert.ok(r.delay >= 1000, `delay ${r.delay}`);
  // Once the first leaves, the second gets in.
  first.close();
  await within(70000, 'the second connects', second.ready());
});

test('a node drained with SIGTERM closes with 1012; the client is back once it restarts', async (t) => {
  const server = await startHerald(t);
  const c = client(t, server.url);
  await c.ready();
  const d = once(c, 'disconnect');
  await server.stop();
  assert.equal((await within(5000, 'disconnect', d)).code, 1012);
  await server.restart();
  await within(10000, 'back', once(c, 'connect'));
});
