import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tracker, positionOf } from '../../dist/tracker.js';

const at = (offset, epoch = 'E1') => ({ offset, epoch });

test('in-order publications are delivered, duplicates dropped', () => {
  const t = new Tracker('c');
  assert.equal(t.onPublication(at(1)).kind, 'deliver');
  assert.equal(t.onPublication(at(2)).kind, 'deliver');
  assert.equal(t.onPublication(at(2)).kind, 'duplicate');
  assert.equal(t.onPublication(at(1)).kind, 'duplicate');
  assert.deepEqual(t.position, at(2));
  assert.equal(t.onPublication(null).kind, 'deliver', 'no history: always delivered');
});

test('a jump or a new epoch is a gap, then delivered', () => {
  const t = new Tracker('c', at(2));
  const v = t.onPublication(at(5));
  assert.equal(v.kind, 'afterGap');
  assert.deepEqual(v.gap, { channel: 'c', cause: 'offsetJump', last: at(2), resume: at(4) });
  const e = t.onPublication(at(1, 'E2'));
  assert.equal(e.gap.cause, 'epochChanged');
  assert.deepEqual(e.gap.resume, at(0, 'E2'));
  assert.deepEqual(t.position, at(1, 'E2'));
});

test('subscribe replies', () => {
  const fresh = new Tracker('c');
  assert.equal(fresh.onReply(at(7), undefined, false), null);
  assert.deepEqual(fresh.position, at(7));
  const ok = new Tracker('c', at(3));
  assert.equal(ok.onReply(at(3), true, true), null, 'recovered, all delivered');
  const lost = new Tracker('c', at(3));
  const g = lost.onReply(at(10, 'E2'), false, true);
  assert.equal(g.cause, 'notRecovered');
  assert.deepEqual(lost.position, at(10, 'E2'));
  const short = new Tracker('c', at(3));
  assert.equal(short.onReply(at(5), true, true).cause, 'offsetJump', 'a top past what arrived');
  const late = new Tracker('c', at(9));
  assert.equal(late.onReply(at(5), undefined, false), null, 'never backwards');
  assert.deepEqual(late.position, at(9));
});

test('announced gaps', () => {
  const t = new Tracker('c', at(3));
  assert.equal(t.onUnrecoverable(at(2)), null, 'nothing lost for us');
  const g = t.onUnrecoverable(at(8));
  assert.equal(g.cause, 'announced');
  assert.deepEqual(g.resume, at(8));
  assert.equal(t.onPublication(at(9)).kind, 'deliver');
});

test('positionOf reads only valid positions', () => {
  assert.deepEqual(positionOf({ offset: 3, epoch: 'x', channel: 'c' }), { offset: 3, epoch: 'x' });
  for (const bad of [null, 3, {}, { offset: '3', epoch: 'x' }, { offset: -1, epoch: 'x' }, { offset: 1.5, epoch: 'x' }, { offset: 1 }]) {
    assert.equal(positionOf(bad), null);
  }
});
