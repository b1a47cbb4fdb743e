import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, DEFAULT_RECONNECT, ceiling, hintFromClose, parseRetryAfterHeader, parseRetryAfterReason } from '../../dist/backoff.js';

test('the ceiling grows by the multiplier and is capped', () => {
  const p = { ...DEFAULT_RECONNECT, initialDelay: 100, multiplier: 2, maxDelay: 1000 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => ceiling(p, n)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(ceiling(p, 10000), 1000, 'no overflow');
  assert.equal(ceiling({ ...p, multiplier: 0.5 }, 3), 100, 'a multiplier below 1 counts as 1');
});

test('full jitter: delays drawn in [0, ceiling]; a reset starts over', () => {
  const p = { ...DEFAULT_RECONNECT, initialDelay: 100, multiplier: 2, maxDelay: 1000 };
  const top = new Backoff(p, () => 1);
  assert.deepEqual([top.next(), top.next(), top.next()], [100, 200, 400]);
  top.reset();
  assert.equal(top.next(), 100);
  const bottom = new Backoff(p, () => 0);
  assert.equal(bottom.next(), 0);
  const mid = new Backoff(p, () => 0.5);
  assert.equal(mid.next(), 50);
});

test('hints: 1000 stops, 1012 drains, 1013 waits, dead connections retry at once', () => {
  assert.deepEqual(hintFromClose(1000, ''), { kind: 'stop' });
  assert.deepEqual(hintFromClose(1012, 'draining'), { kind: 'drain' });
  assert.deepEqual(hintFromClose(1013, 'retry after 7'), { kind: 'after', ms: 7000 });
  assert.deepEqual(hintFromClose(1013, 'busy'), { kind: 'backoff' });
  for (const code of [4000, 4001, 1005]) assert.deepEqual(hintFromClose(code, ''), { kind: 'now' });
  for (const code of [1001, 1006, 1011, 4100]) assert.deepEqual(hintFromClose(code, ''), { kind: 'backoff' });
});

test('retry-after parsing', () => {
  assert.equal(parseRetryAfterReason('retry after 3'), 3000);
  assert.equal(parseRetryAfterReason('Retry After 1.5s'), 1500);
  assert.equal(parseRetryAfterReason('retry later'), null);
  assert.equal(parseRetryAfterHeader('2'), 2000);
  assert.equal(parseRetryAfterHeader(undefined), null);
  assert.equal(parseRetryAfterHeader('soon'), null);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfterHeader('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
});

test('delays for hints', () => {
  const p = { ...DEFAULT_RECONNECT, initialDelay: 100, multiplier: 2, maxDelay: 1000, drainJitter: 300 };
  const b = new Backoff(p, () => 1);
  assert.equal(b.delayFor({ kind: 'stop' }), null);
  assert.equal(b.delayFor({ kind: 'now' }), 0);
  assert.equal(b.delayFor({ kind: 'drain' }), 300);
  const waiting = new Backoff(p, () => 0);
  assert.equal(waiting.delayFor({ kind: 'after', ms: 2000 }), 2000, 'never before the server asked');
  const jittered = new Backoff(p, () => 1);
  assert.equal(jittered.delayFor({ kind: 'after', ms: 2000 }), 2100, 'plus at most one backoff step');
  assert.equal(jittered.failures, 1);
});
