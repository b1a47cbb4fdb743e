// Compat: the official client on channels with history and presence. Its
// publications carry two more fields (offset, epoch), which it ignores; the
// #herald/... procedures are ordinary invokes for it and the join/leave
// pushes ordinary transmits. Herald only (socketcluster-server has no such
// channels).
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {startServer, IS_REFERENCE} = require('./lib/server');
const {connectClient, collect, subscribe, parseMaybe, unique} = require('./lib/client');

const skip = IS_REFERENCE && 'socketcluster-server has no history or presence';

let server;
let configFile;
before(async () => {
  if (skip) return;
  configFile = path.join(os.tmpdir(), `herald-compat-history-${process.pid}.toml`);
  fs.writeFileSync(configFile, [
    '[namespaces.chat]',
    'history_size = 100',
    'history_ttl = "10m"',
    'recover = true',
    'presence = true',
    'join_leave = true',
    '',
  ].join('\n'));
  server = await startServer(null, {kind: 'fixture', extraArgs: ['--config', configFile]});
});
after(() => {
  if (configFile) fs.rmSync(configFile, {force: true});
  return server && server.stop();
});

function publishFrames(socket, channel) {
  const frames = collect(socket.listener('message'));
  return {
    async next(label) {
      const item = await frames.waitFor((it) => {
        const p = parseMaybe(it.message);
        return p && p.event === '#publish' && p.data && p.data.channel === channel;
      }, 5000, label);
      return parseMaybe(item.message).data;
    },
  };
}

test('publications on a history channel reach the official client with their position', {skip, timeout: 15000}, async (t) => {
  const ch = unique('chat:room-');
  const {socket: a} = await connectClient(t, server.port);
  const {socket: b} = await connectClient(t, server.port);
  const channel = await subscribe(a, ch);
  const data = collect(channel);
  const frames = publishFrames(a, ch);
  await b.invokePublish(ch, {n: 1});
  await b.invokePublish(ch, {n: 2});
  // The channel stream yields the data as socketcluster-server would.
  assert.deepEqual(await data.next(5000, 'first publication'), {n: 1});
  assert.deepEqual(await data.next(5000, 'second publication'), {n: 2});
  // On the wire: the same frame plus offset and epoch.
  const first = await frames.next('first frame');
  const second = await frames.next('second frame');
  assert.deepEqual([first.offset, second.offset], [1, 2]);
  assert.equal(typeof first.epoch, 'string');
  assert.equal(first.epoch, second.epoch);

  // History and presence through plain invokes.
  const history = await a.invoke('#herald/history', {channel: ch});
  assert.deepEqual(history.publications.map((p) => p.data), [{n: 1}, {n: 2}]);
  assert.equal(history.offset, 2);
  assert.equal(history.epoch, first.epoch);
  const stats = await a.invoke('#herald/presenceStats', {channel: ch});
  assert.deepEqual(stats, {clients: 1, users: 0});
  const presence = await a.invoke('#herald/presence', {channel: ch});
  assert.deepEqual(Object.keys(presence.clients), [a.id]);
});

test('join and leave events arrive on the official client as receivers', {skip, timeout: 15000}, async (t) => {
  const ch = unique('chat:joins-');
  const {socket: watcher} = await connectClient(t, server.port);
  const joins = collect(watcher.receiver('#herald/join'));
  const leaves = collect(watcher.receiver('#herald/leave'));
  await subscribe(watcher, ch);
  assert.deepEqual(await joins.next(5000, 'own join'), {channel: ch, client: watcher.id, user: null});
  const {socket: other} = await connectClient(t, server.port);
  await subscribe(other, ch);
  assert.deepEqual(await joins.next(5000, 'other join'), {channel: ch, client: other.id, user: null});
  const otherId = other.id;
  other.disconnect();
  assert.deepEqual(await leaves.next(5000, 'leave'), {channel: ch, client: otherId, user: null});
});

test('the official client resubscribes to a history channel after a reconnect', {skip, timeout: 20000}, async (t) => {
  const ch = unique('chat:again-');
  const {socket: a} = await connectClient(t, server.port, {autoReconnectOptions: {initialDelay: 50, randomness: 10}});
  const {socket: b} = await connectClient(t, server.port);
  const channel = await subscribe(a, ch);
  const data = collect(channel);
  // Close from the server side (the fixture's disconnectMe): the client
  // reconnects by itself and subscribes again (without recovery).
  const reconnected = a.listener('connect').once();
  await a.invoke('disconnectMe', {code: 4500 - 1, reason: 'bye'}).catch(() => {});
  await reconnected;
  await channel.listener('subscribe').once();
  await b.invokePublish(ch, 'after');
  assert.equal(await data.next(5000, 'publication after the reconnect'), 'after');
});
