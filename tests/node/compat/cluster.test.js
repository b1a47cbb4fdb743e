// Compat: the official client sees no difference between one Herald node and
// several. For each broker, two `herald-fixture serve --broker URL` nodes
// share private engines (one Redis; two Redis servers sharded by channel; one
// NATS): channels, user addressing and the cluster view work across them.
// Redis Cluster has its own fault suite in crates/herald-broker-redis.
// Herald only (socketcluster-server has no such brokers here).
'use strict';

const {test, describe, before, after} = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {startServer, IS_HERALD} = require('./lib/server');
const {connectClient, collect, subscribe, unique, withTimeout} = require('./lib/client');
const {startRedis, startNats} = require('./lib/engines');

const BROKERS = {
  'redis': async () => {
    const r = await startRedis(null);
    return {url: r.url, stop: () => r.stop()};
  },
  'sharded redis': async () => {
    const r1 = await startRedis(null);
    const r2 = await startRedis(null);
    return {url: `${r1.url},${r2.url}`, stop: async () => { await r1.stop(); await r2.stop(); }};
  },
  'nats': async () => {
    const n = await startNats(null);
    return {url: n.url, stop: () => n.stop()};
  },
};

for (const [name, startEngine] of Object.entries(BROKERS)) {
  describe(`two nodes over ${name}`, {skip: !IS_HERALD && 'Herald clustering only'}, () => {
    let engine;
    let nodeA;
    let nodeB;
    let configDir;
    before(async () => {
      engine = await startEngine();
      configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-cluster-'));
      const config = path.join(configDir, 'herald.toml');
      fs.writeFileSync(config, 'announce_interval = "200ms"\n');
      const common = ['--broker', engine.url, '--config', config];
      nodeA = await startServer(null, {kind: 'fixture', extraArgs: [...common, '--node-id', 'node-a']});
      nodeB = await startServer(null, {kind: 'fixture', extraArgs: [...common, '--node-id', 'node-b']});
    });
    after(async () => {
      if (nodeA) await nodeA.stop();
      if (nodeB) await nodeB.stop();
      if (engine) await engine.stop();
      if (configDir) fs.rmSync(configDir, {recursive: true, force: true});
    });

    test('a publication on one node reaches subscribers on both, once and in order', {timeout: 20000}, async (t) => {
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

    test('a message to a user reaches the user on the other node', {timeout: 20000}, async (t) => {
      const user = unique('user-');
      const {socket: bob} = await connectClient(t, nodeA.port);
      await bob.invoke('login', {user});
      const {socket: admin} = await connectClient(t, nodeB.port);
      const notes = collect(bob.receiver('note'));
      // Node A subscribes to the user's messages right after the login:
      // send until one lands (bounded), each attempt numbered.
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

    test('both nodes see each other in the cluster view', {timeout: 20000}, async (t) => {
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
  });
}
