import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Requests } from '../../dist/requests.js';

test('a reply settles its request; an error reply rejects with the server\'s error', async () => {
  const r = new Requests(10);
  const ok = r.add(1, 'one', 1000, true, 'x');
  const bad = r.add(2, 'two', 1000, true, 'y');
  assert.equal(r.settle(1, 'yes', undefined), true);
  assert.equal(r.settle(2, undefined, { name: 'MyError', message: 'nope' }), true);
  assert.equal(r.settle(3, 1, undefined), false, 'nothing waited for it');
  assert.equal(await ok, 'yes');
  await assert.rejects(bad, { name: 'MyError', message: 'nope' });
});

test('the outbox: bounded, drained in order without requests that timed out', async () => {
  const r = new Requests(3);
  const late = r.add(1, 'late', 10, false, 'a');
  r.queue('b');
  const waits = r.add(2, 'waits', 1000, false, 'c');
  assert.equal(r.full, true);
  r.queue('dropped');
  await assert.rejects(late, { name: 'TimeoutError' });
  assert.deepEqual(r.drain(), ['b', 'c']);
  assert.deepEqual(r.drain(), []);
  r.fail(false, 'dropped');
  await assert.rejects(waits, { name: 'BadConnectionError' }, 'sent once drained, so failed by a drop');
});

test('a drop fails what was sent, not what waits; a close fails everything', async () => {
  const r = new Requests(10);
  const sent = r.add(1, 'sent', 1000, true, 'a');
  const waiting = r.add(2, 'waiting', 1000, false, 'b');
  r.fail(false, 'the connection closed');
  await assert.rejects(sent, /sent: the connection closed/);
  r.fail(true, 'closed');
  await assert.rejects(waiting, { name: 'BadConnectionError' });
  assert.deepEqual(r.drain(), []);
});

test('track calls back synchronously; onTimeout replaces the rejection', () => {
  const r = new Requests(10);
  const seen = [];
  r.track(1, 'sync', null, true, '', { resolve: (v) => seen.push(v), reject: () => seen.push('rejected') });
  r.settle(1, 'now', undefined);
  assert.deepEqual(seen, ['now']);
});
