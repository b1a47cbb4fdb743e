// Compat: JWT authentication with the official client - token in the
// handshake (valid / expired / wrong secret / alg none / RS256 / garbage /
// none), #authenticate and #removeAuthToken from the client, and tokens
// issued/removed by the server (fixture login/logout, whoami).
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const jwt = require('jsonwebtoken');
const {startServer, DEFAULT_SECRET} = require('./lib/server');
const {
  createClient, connectClient, waitConnect, collect, rejection, RawSocket, parseMaybe, unique, withTimeout,
} = require('./lib/client');
const tokens = require('./lib/tokens');

let server;
before(async () => {
  server = await startServer(null, {kind: 'fixture'});
});
after(() => server && server.stop());

test('valid HS256 token in the handshake authenticates', {timeout: 15000}, async (t) => {
  const user = unique('u-');
  const token = tokens.validToken(user, {role: 'tester'});
  const engine = tokens.memoryAuthEngine(token);
  const socket = createClient(t, server.port, {authEngine: engine});
  const authEvents = collect(socket.listener('authenticate'));
  const status = await waitConnect(socket);
  assert.equal(status.isAuthenticated, true);
  assert.equal(status.authError, undefined);
  assert.equal(socket.authState, 'authenticated');
  assert.equal(socket.signedAuthToken, token);
  assert.equal(socket.authToken.sub, user);
  await authEvents.next(2000, "'authenticate' event");

  const claims = await socket.invoke('whoami');
  assert.equal(claims.sub, user);
  assert.equal(claims.role, 'tester');
  assert.equal(engine.store.removed, 0, 'a valid token must not be removed');
});

const badTokenCases = [
  {name: 'expired', make: (u) => tokens.expiredToken(u), errorName: 'AuthTokenExpiredError'},
  {name: 'wrong secret', make: (u) => tokens.wrongSecretToken(u), errorName: 'AuthTokenInvalidError'},
  {name: 'alg none', make: (u) => tokens.algNoneToken(u), errorName: 'AuthTokenInvalidError'},
  {name: 'RS256 (algorithm confusion)', make: (u) => tokens.rs256Token(u), errorName: 'AuthTokenInvalidError'},
  {name: 'malformed', make: () => 'garbage', errorName: 'AuthTokenInvalidError'},
];

for (const c of badTokenCases) {
  test(`${c.name} token in the handshake: ${c.errorName}, unauthenticated, stays open, token removed`, {timeout: 15000}, async (t) => {
    const engine = tokens.memoryAuthEngine(c.make(unique('u-')));
    const socket = createClient(t, server.port, {authEngine: engine});
    const removed = collect(socket.listener('removeAuthToken'));
    const status = await waitConnect(socket);
    assert.equal(status.isAuthenticated, false);
    assert.ok(status.authError, 'connect status must carry authError');
    assert.equal(status.authError.name, c.errorName);
    assert.equal(typeof status.authError.message, 'string');
    assert.equal(status.authError.isBadToken, true);
    assert.equal(socket.authState, 'unauthenticated');
    assert.equal(socket.authToken, null);
    // The server pushes #removeAuthToken for a bad token; the client drops it.
    await removed.next(5000, "'removeAuthToken' (server #removeAuthToken push)");
    assert.equal(engine.store.token, null);
    // Soft failure: the connection stays usable.
    assert.equal(socket.state, 'open');
    assert.equal(await socket.invoke('echo', 'still-open'), 'still-open');
    assert.equal(await socket.invoke('whoami'), null);
  });
}

test('no token: unauthenticated, no authError, no #removeAuthToken push', {timeout: 15000}, async (t) => {
  const socket = createClient(t, server.port, {authEngine: tokens.memoryAuthEngine(null)});
  const frames = collect(socket.listener('message'));
  const status = await waitConnect(socket);
  assert.equal(status.isAuthenticated, false);
  assert.equal(status.authError, undefined);
  assert.equal(socket.authState, 'unauthenticated');
  assert.equal(await socket.invoke('echo', 'x'), 'x');
  const pushes = frames.items.map((it) => parseMaybe(it.message))
    .filter((p) => p && p.event === '#removeAuthToken');
  assert.deepEqual(pushes, []);
});

test('raw: bad token handshake reply and #removeAuthToken push frames', {timeout: 15000}, async (t) => {
  const raw = await RawSocket.open(t, server.url);
  raw.answerPings = true;
  const reply = await raw.handshake('garbage');
  assert.equal(reply.rid, 1);
  assert.equal(reply.data.isAuthenticated, false);
  assert.equal(typeof reply.data.id, 'string');
  assert.equal(typeof reply.data.pingTimeout, 'number');
  assert.equal(reply.data.authError.name, 'AuthTokenInvalidError');
  assert.equal(reply.data.authError.isBadToken, true);
  const {frame} = await raw.waitFrame((f) => (parseMaybe(f) || {}).event === '#removeAuthToken', 5000, '#removeAuthToken');
  assert.deepEqual(JSON.parse(frame), {event: '#removeAuthToken'});
});

test('socket.authenticate(valid) then whoami; deauthenticate() then whoami is null', {timeout: 15000}, async (t) => {
  const user = unique('u-');
  const {socket} = await connectClient(t, server.port);
  assert.equal(await socket.invoke('whoami'), null);

  const status = await withTimeout(socket.authenticate(tokens.validToken(user)), 5000, 'authenticate');
  assert.equal(status.isAuthenticated, true);
  assert.equal(status.authError ?? null, null);
  assert.equal(socket.authState, 'authenticated');
  assert.equal(socket.authToken.sub, user);
  assert.equal((await socket.invoke('whoami')).sub, user);

  await socket.deauthenticate();
  assert.equal(socket.authState, 'unauthenticated');
  // #removeAuthToken is a transmit; the following invoke is ordered after it.
  assert.equal(await socket.invoke('whoami'), null);
});

test('socket.authenticate(bad token) rejects with the auth error and leaves the socket unauthenticated', {timeout: 15000}, async (t) => {
  const {socket} = await connectClient(t, server.port);
  await socket.authenticate(tokens.validToken(unique('u-')));
  const err = await rejection(socket.authenticate(tokens.wrongSecretToken('mallory')), 5000, 'authenticate(bad)');
  assert.equal(err.name, 'AuthTokenInvalidError');
  assert.equal(socket.authState, 'unauthenticated');
  assert.equal(await socket.invoke('whoami'), null);

  const err2 = await rejection(socket.authenticate(tokens.expiredToken('old')), 5000, 'authenticate(expired)');
  assert.equal(err2.name, 'AuthTokenExpiredError');
  assert.equal(socket.state, 'open');
});

test('login issues a token (#setAuthToken), whoami sees it, logout removes it', {timeout: 15000}, async (t) => {
  const user = unique('u-');
  const engine = tokens.memoryAuthEngine(null);
  const {socket} = await connectClient(t, server.port, {authEngine: engine});
  const authEvents = collect(socket.listener('authenticate'));
  const deauthEvents = collect(socket.listener('deauthenticate'));

  assert.deepEqual(await socket.invoke('login', {user}), {ok: 1});
  const ev = await authEvents.next(5000, "'authenticate' after login");
  assert.equal(ev.authToken.sub, user);
  assert.equal(socket.authState, 'authenticated');
  assert.equal(socket.authToken.sub, user);
  assert.equal(typeof socket.signedAuthToken, 'string');
  assert.equal(engine.store.token, socket.signedAuthToken, 'client saved the issued token');

  // The issued token is an HS256 JWT signed with the server secret, with iat/exp.
  const verified = jwt.verify(socket.signedAuthToken, DEFAULT_SECRET, {algorithms: ['HS256']});
  assert.equal(verified.sub, user);
  assert.equal(typeof verified.iat, 'number');
  assert.equal(typeof verified.exp, 'number');
  assert.ok(verified.exp > tokens.nowSeconds(), 'default expiry is in the future');

  assert.equal((await socket.invoke('whoami')).sub, user);

  await socket.invoke('logout');
  await deauthEvents.next(5000, "'deauthenticate' after logout");
  assert.equal(socket.authState, 'unauthenticated');
  assert.equal(socket.signedAuthToken, null);
  assert.equal(engine.store.token, null);
  assert.equal(await socket.invoke('whoami'), null);
});

test('login with ttl sets exp = now + ttl; the token authenticates a new connection', {timeout: 15000}, async (t) => {
  const user = unique('u-');
  const engine = tokens.memoryAuthEngine(null);
  const {socket} = await connectClient(t, server.port, {authEngine: engine});
  const authEvents = collect(socket.listener('authenticate'));
  const before = tokens.nowSeconds();
  await socket.invoke('login', {user, ttl: 120});
  await authEvents.next(5000, "'authenticate' after login");
  const exp = socket.authToken.exp;
  assert.ok(exp >= before + 120 - 2 && exp <= tokens.nowSeconds() + 120 + 2, `exp ${exp} should be ~now+120`);

  // Reuse the saved token in a fresh client: the server accepts its own token.
  const engine2 = tokens.memoryAuthEngine(engine.store.token);
  const socket2 = createClient(t, server.port, {authEngine: engine2});
  const status = await waitConnect(socket2);
  assert.equal(status.isAuthenticated, true);
  assert.equal(socket2.authToken.sub, user);
  assert.equal((await socket2.invoke('whoami')).sub, user);
});

test('a session token that expires is dropped by the server on the next message', {timeout: 15000}, async (t) => {
  const user = unique('u-');
  const {socket} = await connectClient(t, server.port);
  const authEvents = collect(socket.listener('authenticate'));
  const deauthEvents = collect(socket.listener('deauthenticate'));
  await socket.invoke('login', {user, ttl: 1});
  await authEvents.next(5000, "'authenticate' after login");
  // Keep talking to the server until it notices the expiry (bounded).
  const deadline = Date.now() + 6000;
  let claims = await socket.invoke('whoami');
  while (claims !== null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 150)); // poll interval, not a synchronisation sleep
    claims = await socket.invoke('whoami');
  }
  assert.equal(claims, null, 'whoami must return null once the token expired');
  await deauthEvents.next(5000, "'deauthenticate' (server #removeAuthToken push)");
  assert.equal(socket.authState, 'unauthenticated');
});
