#!/usr/bin/env node
// A plain socketcluster-server@20 for benchmarks: default options (no
// middleware, no procedures; the auth key from HERALD_AUTH_SECRET when set),
// the WebSocket endpoint on
// /socketcluster/, listening on 127.0.0.1.
//
// Usage: node bench/sc-server.js [PORT]     (or PORT=... in the environment;
//        0 or nothing picks a free port)
//
// Prints exactly one line `listening <port>` on stdout once listening; exits
// on SIGTERM/SIGINT. Modules are resolved from tests/node/node_modules, where
// package.json pins socketcluster-server 20.0.1.
'use strict';

const http = require('http');
const path = require('path');

const modules = path.join(__dirname, '..', 'tests', 'node', 'node_modules');
const socketClusterServer = require(path.join(modules, 'socketcluster-server'));

const port = Number(process.argv[2] || process.env.PORT || 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${process.argv[2] || process.env.PORT}`);
  process.exit(2);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
// The auth key tokens are verified with: the secret herald-bench gives a
// server it starts (HERALD_AUTH_SECRET), so that `conns` can authenticate its
// sockets here as on Herald; without it socketcluster-server draws one.
const authKey = process.env.HERALD_AUTH_SECRET;
const agServer = socketClusterServer.attach(httpServer, {
  path: '/socketcluster/',
  ...(authKey ? {authKey} : {}),
});

// Report server errors; per-socket warnings (closed sockets...) are expected
// during storms and stay silent.
(async () => {
  for await (const {error} of agServer.listener('error')) {
    console.error('server error:', error && error.message);
  }
})();

httpServer.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
