// Compat: Herald's HTTP server API (docs/api.md) driving official
// socketcluster-client sockets, the way a backend in another language uses
// it: `fetch` POSTs to /api/<method> with the API key, and the official
// client receives what they send. The API is Herald's own (socketcluster-
// server has none), so under COMPAT_TARGET=reference every case is reported
// skipped with that reason; against Herald nothing is skipped.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {startServer, IS_REFERENCE} = require('./lib/server');
const {connectClient, collect, subscribe, unique} = require('./lib/client');
const {validToken, memoryAuthEngine} = require('./lib/tokens');

const skip = IS_REFERENCE && "the HTTP API is Herald's own (socketcluster-server has none)";
const API_KEY = 'compat-api-key';

let server;
let configFile;
before(async () => {
  if (skip) return;
  configFile = path.join(os.tmpdir(), `herald-compat-api-${process.pid}.toml`);
  fs.writeFileSync(configFile, [
    '[namespaces.chat]',
    'history_size = 100',
    'presence = true',
    '',
    // Server-side only: no client may subscribe by itself.
    '[namespaces.inbox]',
    'subscribe = "none"',
    'publish = "none"',
    'history_size = 10',
    '',
  ].join('\n'));
  server = await startServer(null, {kind: 'plain', apiKey: API_KEY, extraArgs: ['--config', configFile]});
});
after(() => {
  if (configFile) fs.rmSync(configFile, {force: true});
  return server && server.stop();
});

/** `POST /api/<method>` that must answer 200; resolves its `result`. */
async function api(method, params) {
  const {status, body} = await server.api(method, params);
  assert.equal(status, 200, `${method} ${JSON.stringify(params)}: ${status} ${JSON.stringify(body)}`);
  return body.result;
}

/** An official client logged in as `user` (a token with `sub` from the start). */
function connectUser(t, user, extra = {}) {
  return connectClient(t, server.port, {authEngine: memoryAuthEngine(validToken(user)), ...extra});
}

test('a backend publish reaches an official client subscriber', {skip, timeout: 15000}, async (t) => {
  const ch = unique('news-');
  const {socket} = await connectClient(t, server.port);
  const data = collect(await subscribe(socket, ch));
  assert.deepEqual(await api('publish', {channel: ch, data: {text: 'hi'}}), {});
  assert.deepEqual(await data.next(5000, 'the publication'), {text: 'hi'});

  // A wrong key is refused and publishes nothing.
  const res = await fetch(`http://127.0.0.1:${server.port}/api/publish`, {
    method: 'POST',
    headers: {authorization: 'apikey wrong'},
    body: JSON.stringify({channel: ch, data: 'nope'}),
  });
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'unauthorized');
  assert.deepEqual(await api('publish', {channel: ch, data: 'after'}), {});
  assert.equal(await data.next(5000, 'the next publication'), 'after');
});

test('broadcast reaches each channel', {skip, timeout: 15000}, async (t) => {
  const a = unique('bcast-a-');
  const b = unique('chat:bcast-b-');
  const {socket} = await connectClient(t, server.port);
  const onA = collect(await subscribe(socket, a));
  const onB = collect(await subscribe(socket, b));
  const r = await api('broadcast', {channels: [a, b], data: {n: 1}});
  assert.equal(r.publications.length, 2);
  assert.deepEqual(r.publications[0], {channel: a});
  assert.equal(r.publications[1].channel, b);
  assert.equal(r.publications[1].offset, 1);
  assert.equal(typeof r.publications[1].epoch, 'string');
  assert.deepEqual(await onA.next(5000, `the publication on ${a}`), {n: 1});
  assert.deepEqual(await onB.next(5000, `the publication on ${b}`), {n: 1});
});

test("send reaches every authenticated socket of the user, and no other", {skip, timeout: 15000}, async (t) => {
  const user = unique('ann-');
  const {socket: one} = await connectUser(t, user);
  const {socket: two} = await connectUser(t, user);
  const {socket: other} = await connectUser(t, unique('bob-'));
  assert.equal(one.authState, 'authenticated');
  const notes = [one, two, other].map((s) => collect(s.receiver('note')));
  await api('send', {user, event: 'note', data: {hi: 1}});
  assert.deepEqual(await notes[0].next(5000, 'the note on the first socket'), {hi: 1});
  assert.deepEqual(await notes[1].next(5000, 'the note on the second socket'), {hi: 1});
  // The other user's socket got nothing: a second send to it arrives first.
  await api('send', {user: other.authToken.sub, event: 'note', data: 'for bob'});
  assert.equal(await notes[2].next(5000, "bob's note"), 'for bob');
  // Protocol events are not the backend's.
  const refused = await server.api('send', {user, event: '#publish', data: 1});
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'forbidden');
});

test('server-side subscribe: #herald/subscribed, the client subscribes in answer, publications; unsubscribe kicks out', {skip, timeout: 20000}, async (t) => {
  const user = unique('cat-');
  const inbox = `inbox:${user}`;
  const {socket} = await connectUser(t, user);
  const pushes = collect(socket.receiver('#herald/subscribed'));

  // The client may not subscribe by itself.
  await assert.rejects(subscribe(socket, inbox, 5000), /failed/);

  // The backend subscribes the user; the client answers the push.
  await api('subscribe', {user, channel: inbox});
  const push = await pushes.next(5000, '#herald/subscribed');
  assert.equal(push.channel, inbox);
  assert.equal(push.offset, 0);
  assert.equal(typeof push.epoch, 'string');
  const channel = await subscribe(socket, push.channel);
  assert.equal(socket.isSubscribed(inbox), true);
  const data = collect(channel);
  const kicks = collect(channel.listener('kickOut'));
  const unsubscribed = collect(channel.listener('unsubscribe'));
  const published = await api('publish', {channel: inbox, data: 'for cat'});
  assert.equal(published.offset, 1);
  assert.equal(await data.next(5000, 'the publication on the inbox'), 'for cat');

  await api('unsubscribe', {user, channel: inbox});
  const kick = await kicks.next(5000, "the channel's kickOut");
  assert.equal(kick.message, null);
  await unsubscribed.next(5000, "the channel's unsubscribe");
  assert.equal(socket.isSubscribed(inbox, true), false);
});

test("disconnect closes the user's socket with 4104, or the backend's code and reason", {skip, timeout: 15000}, async (t) => {
  const user = unique('dan-');
  const {socket} = await connectUser(t, user, {autoReconnect: false});
  const closes = collect(socket.listener('close'));
  await api('disconnect', {user});
  const ev = await closes.next(5000, "the socket's close");
  assert.equal(ev.code, 4104);
  assert.equal(socket.state, 'closed');

  // With a code and reason of the backend's.
  const {socket: again} = await connectUser(t, user, {autoReconnect: false});
  const closed = collect(again.listener('close'));
  await api('disconnect', {user, code: 4500, reason: 'account closed'});
  const second = await closed.next(5000, 'the second close');
  assert.deepEqual([second.code, second.reason], [4500, 'account closed']);
});

test('presence and presence_stats show the subscribed client', {skip, timeout: 15000}, async (t) => {
  const user = unique('eve-');
  const ch = unique('chat:room-');
  const {socket} = await connectUser(t, user);
  await subscribe(socket, ch);
  // Presence is written as the subscribe is accepted; wait for it, bounded.
  const deadline = Date.now() + 5000;
  let stats;
  while ((stats = await api('presence_stats', {channel: ch})).clients < 1 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(stats, {clients: 1, users: 1});
  const presence = await api('presence', {channel: ch});
  assert.deepEqual(Object.keys(presence.clients), [socket.id]);
  assert.equal(presence.clients[socket.id].user, user);

  // A channel without presence is refused.
  const refused = await server.api('presence', {channel: unique('plain-')});
  assert.deepEqual([refused.status, refused.body.error.code], [422, 'not_available']);
});

test('history of a history channel: what the backend published, in order, with offsets', {skip, timeout: 15000}, async (t) => {
  const ch = unique('chat:log-');
  const {socket} = await connectClient(t, server.port);
  const data = collect(await subscribe(socket, ch));
  const first = await api('publish', {channel: ch, data: {n: 1}});
  const second = await api('publish', {channel: ch, data: {n: 2}});
  assert.deepEqual([first.offset, second.offset], [1, 2]);
  assert.equal(first.epoch, second.epoch);
  assert.deepEqual(await data.next(5000, 'the first publication'), {n: 1});
  assert.deepEqual(await data.next(5000, 'the second publication'), {n: 2});

  const history = await api('history', {channel: ch});
  assert.deepEqual(history, {
    publications: [{offset: 1, data: {n: 1}}, {offset: 2, data: {n: 2}}],
    offset: 2,
    epoch: first.epoch,
  });
  // The client reads the same through the protocol.
  const viaSocket = await socket.invoke('#herald/history', {channel: ch});
  assert.deepEqual(viaSocket.publications.map((p) => p.data), [{n: 1}, {n: 2}]);
  const since = await api('history', {channel: ch, since: {offset: 1, epoch: first.epoch}});
  assert.deepEqual(since.publications.map((p) => p.offset), [2]);
});
