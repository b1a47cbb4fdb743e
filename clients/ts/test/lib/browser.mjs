// Test helper for the browser suites: Debian's chromium driven by
// playwright-core (no browser download), and a static HTTP server on
// loopback for the test page and the built client (the page's origin; the
// WebSocket goes to the Herald server's own port).
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Launches chromium (closed after the test). */
export async function launch(t) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (scripts/test.sh does)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
  t.after(() => browser.close());
  return browser;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css' };

/** Serves `root` (only the listed top-level folders) on a free loopback port. */
export async function serveStatic(t, root, folders) {
  const base = resolve(root);
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = join(base, path);
    const top = path.split('/').filter(Boolean)[0];
    if (!file.startsWith(base + sep) || !folders.includes(top) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  server.closeIdleConnections?.();
  return `http://127.0.0.1:${server.address().port}`;
}

/**
 * Collects a page's console errors and uncaught exceptions (the tests
 * assert there are none), except console lines matching `ignore` (e.g. the
 * browser's own "WebSocket connection failed" while a test keeps the server
 * down on purpose).
 */
export function watchPage(page, name, ignore = []) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !ignore.some((re) => re.test(m.text()))) errors.push(`${name} console: ${m.text()}`);
  });
  return errors;
}

/** The browser's console line for a refused WebSocket connection (a server down on purpose). */
export const REFUSED = /^WebSocket connection to '.*' failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED$/;
