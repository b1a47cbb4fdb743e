// Compat: the official client sees no difference between one Herald node and
// several. Two `herald-fixture serve --broker redis://...` nodes share a
// private redis-server: channels, user addressing and the cluster view work
// across them. Herald only (socketcluster-server has no such broker here).
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {startServer, IS_HERALD} = require('./lib/server');
const {connectClient, collect, subscribe, unique, withTimeout} = require('./lib/client');
const {startRedis} = require('./lib/redis');

const opts = {skip: !IS_HERALD && 'Herald clustering: not a socketcluster-server feature'};

let redis;
let nodeA;
let nodeB;
let configDir;
before(async () => {
  if (!IS_HERALD) return;
  redis = await startRedis(null);
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-cluster-'));
  const config = path.join(configDir, 'herald.toml');
  fs.writeFileSync(config, 'announce_interval = "200ms"\n');
  const common = ['--broker', redis.url, '--config', config];
  nodeA = await startServer(null, {kind: 'fixture', extraArgs: [...common, '--node-id', 'node-a']});
  nodeB = await startServer(null, {kind: 'fixture', extraArgs: [...common, '--node-id', 'node-b']});
});
after(async () => {
  if (nodeA) await nodeA.stop();
  if (nodeB) await nodeB.stop();
  if (redis) await redis.stop();
  if (configDir) fs.rmSync(configDir, {recursive: true, force: true});
});

test('a publication on one node reaches subscribers on both, once and in order', {...opts, timeout: 20000}, async (t) => {
  const ch = unique('news-');
  const {socket: onA} = await connectClient(t, nodeA.port);
  const {socket: onB} = await connectClient(t, nodeB.port);
  const {socket: publisher} = await connectClient(t, nodeB.port);
  const gotA = collect(await subscribe(onA, ch));
  const gotB = collect(await subscribe(onB, ch));
  const N = 200;
  for (let i = 0; i < N; i++) {
    if (i % 2) await publisher.invokePublish(ch, {i});
    else publisher.transmitPublish(ch, {i});
  }
  await publisher.invokePublish(ch, {i: 'end'});
  for (const got of [gotA, gotB]) {
    await got.waitFor((d) => d.i === 'end', 10000, `end marker on ${ch}`);
    assert.deepEqual(got.items.map((d) => d.i), [...Array(N).keys(), 'end']);
  }
});

test('a message to a user reaches the user on the other node', {...opts, timeout: 20000}, async (t) => {
  const user = unique('user-');
  const {socket: bob} = await connectClient(t, nodeA.port);
  await bob.invoke('login', {user});
  const {socket: admin} = await connectClient(t, nodeB.port);
  const notes = collect(bob.receiver('note'));
  // The user's node subscribes to the user's messages right after login;
  // retry the transmit until it lands (bounded), each attempt numbered.
  let attempt = 0;
  const delivered = (async () => {
    for (;;) {
      attempt += 1;
      await admin.invoke('userTransmit', {user, event: 'note', data: {attempt}});
      const r = await notes.waitFor(() => true, 300, 'note').then(() => true, () => false);
      if (r) return;
    }
  })();
  await withTimeout(delivered, 10000, 'user message across nodes');
  assert.ok(notes.items.length >= 1);
});

test('both nodes see each other in the cluster view', {...opts, timeout: 20000}, async (t) => {
  const {socket} = await connectClient(t, nodeA.port);
  const deadline = Date.now() + 10000;
  for (;;) {
    const nodes = await socket.invoke('nodes');
    const ids = nodes.map((n) => n.id).sort();
    if (ids.length === 2) {
      assert.deepEqual(ids, ['node-a', 'node-b']);
      return;
    }
    assert.ok(Date.now() < deadline, `cluster view: ${JSON.stringify(nodes)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
});
