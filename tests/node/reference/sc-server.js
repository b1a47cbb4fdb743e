#!/usr/bin/env node
// Reference server: the REAL socketcluster-server@20 (SocketCluster protocol v2)
// with the same test procedures, receiver and middleware as Herald's
// `herald-fixture` binary, so that identical scenarios can be run against both
// (the Rust client's fidelity tests, and `COMPAT_TARGET=reference` for the
// compat suite in ../compat/).
//
// Environment:
//   PORT           port on 127.0.0.1 (unset or 0: a free port chosen by the OS)
//   AUTH_KEY       HS256 auth key (default: 'herald-test-secret')
//   PING_INTERVAL  ms between server pings (socketcluster default 8000)
//   PING_TIMEOUT   ms without a pong before closing with 4001 (default 30000)
//   MAX_PAYLOAD    max inbound WebSocket message size in bytes (ws closes with 1009)
//   EXIT_ON_STDIN_CLOSE=1  also exit when stdin reaches EOF (orphan protection)
//   SC_DEBUG=1     log server warnings (bad tokens, socket errors) to stderr
//
// Prints exactly one line `listening <port>` on stdout once listening; exits on
// SIGTERM/SIGINT.
//
// Fixture contract (procedures: client invokes with `data`):
//   echo            -> resolves with data unchanged
//   fail            -> rejects {name: 'MyError', message: 'nope'}
//   login {user, ttl?} -> setAuthToken({sub: user[, exp: now+ttl]}), resolves {ok: 1}
//   logout          -> deauthenticate (pushes #removeAuthToken), resolves (no data)
//   whoami          -> resolves with the auth token claims, or null
//   kick {channel, message} -> resolves, then kickOut(channel, message)
//   serverTransmit {event, data} -> resolves, transmits event to the caller
//   serverInvoke {procedure, data} -> invokes procedure on the caller (ack 5 s),
//                      resolves with its result / rejects with its error
//   serverPublish {channel, data} -> exchange.invokePublish, resolves
//   disconnectMe {code, reason} -> resolves, then disconnect(code, reason)
// Receivers (client transmits):
//   tell X          -> server transmits `told` with X
// Middleware (inbound):
//   #subscribe to `private/...` while unauthenticated -> ForbiddenError
//   client #publish to `readonly/...` -> ForbiddenError
'use strict';

const http = require('http');
const socketClusterServer = require('socketcluster-server');

function envInt(name) {
  const v = process.env[name];
  if (v == null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`invalid ${name}: ${v}`);
    process.exit(2);
  }
  return n;
}

const port = envInt('PORT') || 0;
const options = {
  authKey: process.env.AUTH_KEY || 'herald-test-secret',
  path: '/socketcluster/',
};
const pingInterval = envInt('PING_INTERVAL');
const pingTimeout = envInt('PING_TIMEOUT');
const maxPayload = envInt('MAX_PAYLOAD');
if (pingInterval != null) options.pingInterval = pingInterval;
if (pingTimeout != null) options.pingTimeout = pingTimeout;
if (maxPayload != null) options.maxPayload = maxPayload;

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const agServer = socketClusterServer.attach(httpServer, options);

function namedError(name, message) {
  const err = new Error(message);
  err.name = name;
  return err;
}

// ---- middleware ----
agServer.setMiddleware(agServer.MIDDLEWARE_INBOUND, async (middlewareStream) => {
  for await (const action of middlewareStream) {
    if (
      action.type === action.SUBSCRIBE &&
      typeof action.channel === 'string' &&
      action.channel.startsWith('private/') &&
      action.socket.authState !== action.socket.AUTHENTICATED
    ) {
      action.block(namedError('ForbiddenError', `Subscribing to ${action.channel} requires authentication`));
      continue;
    }
    if (
      action.type === action.PUBLISH_IN &&
      typeof action.channel === 'string' &&
      action.channel.startsWith('readonly/')
    ) {
      action.block(namedError('ForbiddenError', `Publishing to ${action.channel} is not allowed`));
      continue;
    }
    action.allow();
  }
});

// ---- procedures and receivers ----
function serveProcedure(socket, name, handler) {
  (async () => {
    for await (const request of socket.procedure(name)) {
      // Handle concurrently: serverInvoke waits on the client.
      (async () => {
        try {
          await handler(request);
        } catch (err) {
          if (!request.sent) request.error(err);
        }
      })();
    }
  })();
}

function setUpSocket(socket) {
  serveProcedure(socket, 'echo', (req) => req.end(req.data));

  serveProcedure(socket, 'fail', (req) => req.error(namedError('MyError', 'nope')));

  serveProcedure(socket, 'login', async (req) => {
    const data = req.data || {};
    const claims = {sub: data.user};
    if (data.ttl != null) {
      claims.exp = Math.floor(Date.now() / 1000) + Number(data.ttl);
    }
    await socket.setAuthToken(claims);
    req.end({ok: 1});
  });

  serveProcedure(socket, 'logout', (req) => {
    req.end();
    socket.deauthenticate();
  });

  serveProcedure(socket, 'whoami', (req) => req.end(socket.authToken || null));

  serveProcedure(socket, 'kick', async (req) => {
    const data = req.data || {};
    req.end();
    await socket.kickOut(data.channel, data.message);
  });

  serveProcedure(socket, 'serverTransmit', (req) => {
    const data = req.data || {};
    req.end();
    socket.transmit(data.event, data.data);
  });

  serveProcedure(socket, 'serverInvoke', async (req) => {
    const data = req.data || {};
    let result;
    try {
      result = await socket.invoke(data.procedure, data.data, {ackTimeout: 5000});
    } catch (err) {
      req.error(err);
      return;
    }
    req.end(result);
  });

  serveProcedure(socket, 'serverPublish', async (req) => {
    const data = req.data || {};
    await agServer.exchange.invokePublish(data.channel, data.data);
    req.end();
  });

  serveProcedure(socket, 'disconnectMe', (req) => {
    const data = req.data || {};
    req.end();
    socket.disconnect(data.code, data.reason);
  });

  (async () => {
    for await (const data of socket.receiver('tell')) {
      socket.transmit('told', data);
    }
  })();
}

// 'handshake' fires when the WebSocket is accepted, before the #handshake
// reply is sent, so the consumers exist before any client request can arrive.
(async () => {
  for await (const {socket} of agServer.listener('handshake')) {
    setUpSocket(socket);
  }
})();

// Swallow per-socket errors/warnings (bad tokens, 4001 closes...) unless asked.
(async () => {
  for await (const {warning} of agServer.listener('warning')) {
    if (process.env.SC_DEBUG) console.error('warning:', warning && warning.message);
  }
})();
(async () => {
  for await (const {error} of agServer.listener('error')) {
    console.error('server error:', error);
  }
})();

httpServer.on('error', (err) => {
  console.error('http server error:', err.message);
  process.exit(1);
});

httpServer.listen(port, '127.0.0.1', () => {
  const actual = httpServer.address().port;
  process.stdout.write(`listening ${actual}\n`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

// Opt-in: exit when stdin reaches EOF, so a parent that dies without killing
// us (e.g. a panicking Rust test holding a piped stdin) leaves no orphan.
if (process.env.EXIT_ON_STDIN_CLOSE === '1') {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}
