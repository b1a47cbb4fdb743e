import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AsyncQueue } from '../../dist/queue.js';
import { Subscription } from '../../dist/subscription.js';

test('items in order, waiting reader woken, end after what waits', async () => {
  const q = new AsyncQueue(10);
  const first = q.next();
  q.push(1);
  q.push(2);
  q.end();
  assert.deepEqual(await first, { value: 1, done: false });
  assert.deepEqual(await q.next(), { value: 2, done: false });
  assert.equal((await q.next()).done, true);
});

test('bounded: the oldest dropped and counted', async () => {
  const q = new AsyncQueue(2);
  q.push(1);
  q.push(2);
  assert.equal(q.push(3), false);
  assert.equal(q.dropped, 1);
  assert.equal((await q.next()).value, 2);
});

test('an error ends the reader', async () => {
  const q = new AsyncQueue();
  q.push('a');
  q.end(new Error('refused'));
  assert.equal((await q.next()).value, 'a');
  await assert.rejects(q.next(), /refused/);
});

test('a subscription: gap carried by the next publication, lag reported, break unsubscribes', async () => {
  let released = 0;
  const sub = new Subscription('c', () => released++, 2);
  const lag = [];
  sub.on('lagged', (n) => lag.push(n));
  sub._subscribed({ offset: 0, epoch: 'E' });
  assert.deepEqual(await sub.ready, { offset: 0, epoch: 'E' });
  sub._deliver({ channel: 'c', data: 1, offset: 1, epoch: 'E' });
  sub._gap({ channel: 'c', cause: 'announced', last: { offset: 1, epoch: 'E' }, resume: { offset: 5, epoch: 'E' } });
  sub._deliver({ channel: 'c', data: 6, offset: 6, epoch: 'E' });
  sub._deliver({ channel: 'c', data: 7, offset: 7, epoch: 'E' });
  assert.deepEqual(lag, [1]);
  assert.deepEqual(sub.position, { offset: 7, epoch: 'E' });
  const got = [];
  for await (const p of sub) {
    got.push(p);
    if (got.length === 2) break;
  }
  assert.deepEqual(got.map((p) => p.data), [6, 7]);
  assert.equal(got[0].gap.cause, 'announced');
  assert.equal(got[1].gap, undefined);
  assert.equal(released, 1);
  assert.equal(sub.active, false);
});

test('a refused subscription rejects ready and throws in the loop', async () => {
  const sub = new Subscription('c', () => {});
  const err = Object.assign(new Error('no'), { name: 'ForbiddenError' });
  sub._fail(err);
  await assert.rejects(sub.ready, { name: 'ForbiddenError' });
  await assert.rejects((async () => {
    for await (const _ of sub) void _;
  })(), { name: 'ForbiddenError' });
});
