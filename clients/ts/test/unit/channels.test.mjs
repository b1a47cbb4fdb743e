import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Channels } from '../../dist/channels.js';
import { Subscription } from '../../dist/subscription.js';

function setup() {
  const channels = new Channels();
  const gaps = [];
  channels.onGap = (g) => gaps.push(g);
  const sub = new Subscription('c', () => {});
  const { channel, created } = channels.add(sub, null);
  return { channels, gaps, sub, channel, created };
}

async function drain(sub, n) {
  const it = sub[Symbol.asyncIterator]();
  const out = [];
  while (out.length < n) out.push((await it.next()).value);
  return out;
}

test('one channel per name; a second subscription joins it and the last one out releases it', () => {
  const { channels, sub, created } = setup();
  assert.equal(created, true);
  const other = new Subscription('c', () => {});
  assert.equal(channels.add(other, null).created, false);
  assert.equal(channels.remove(sub), null);
  assert.equal(channels.remove(other).name, 'c');
  assert.equal(channels.get('c'), undefined);
});

test('recover is asked from the last position; recovered and live in order, duplicates dropped', async () => {
  const { channels, sub, channel } = setup();
  channels.subscribed(channel, { offset: 2, epoch: 'E' });
  assert.deepEqual(channels.subscribeData(channel), { channel: 'c', recover: { offset: 2, epoch: 'E' } });
  channels.disconnected();
  assert.equal(channel.status, 'unsubscribed');
  channels.subscribeData(channel);
  for (const o of [3, 4, 4, 5]) channels.publication({ channel: 'c', data: o, offset: o, epoch: 'E' });
  channels.subscribed(channel, { offset: 5, epoch: 'E', recovered: true });
  channels.publication({ channel: 'c', data: 6, offset: 6, epoch: 'E' });
  assert.deepEqual((await drain(sub, 4)).map((p) => p.data), [3, 4, 5, 6]);
});

test('recovered: false, #herald/unrecoverable: gaps on the subscription and the client', async () => {
  const { channels, gaps, sub, channel } = setup();
  channels.subscribed(channel, { offset: 1, epoch: 'E' });
  channels.subscribeData(channel);
  channels.subscribed(channel, { offset: 9, epoch: 'F', recovered: false });
  channels.unrecoverable({ channel: 'c', offset: 12, epoch: 'F' });
  channels.unrecoverable({ channel: 'nope', offset: 1, epoch: 'F' });
  channels.unrecoverable({ channel: 'c' });
  assert.deepEqual(gaps.map((g) => g.cause), ['notRecovered', 'announced']);
  channels.publication({ channel: 'c', data: 'x', offset: 13, epoch: 'F' });
  const [p] = await drain(sub, 1);
  assert.equal(p.gap.cause, 'announced');
  assert.deepEqual(sub.position, { offset: 13, epoch: 'F' });
});

test('malformed publications are ignored; a kick ends the subscriptions', async () => {
  const { channels, sub } = setup();
  for (const bad of [null, 'x', {}, { channel: 3 }, { channel: 'other', data: 1 }]) channels.publication(bad);
  channels.kicked('c', 'bye');
  const it = sub[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, true);
  assert.equal(channels.get('c'), undefined);
});
