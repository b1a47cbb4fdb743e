import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrowserTokenStore, MemoryTokenStore } from '../../dist/tokens.js';
import { decodeClaims, parseMessage } from '../../dist/protocol.js';

class FakeStorage {
  #m = new Map();
  getItem(k) {
    return this.#m.has(k) ? this.#m.get(k) : null;
  }
  setItem(k, v) {
    this.#m.set(k, String(v));
  }
  removeItem(k) {
    this.#m.delete(k);
  }
}

test('memory store: watchers see saves and removals once', () => {
  const s = new MemoryTokenStore();
  const seen = [];
  const off = s.watch((t) => seen.push(t));
  s.save('a');
  s.save('a');
  s.remove();
  off();
  s.save('b');
  assert.deepEqual(seen, ['a', null]);
  assert.equal(s.load(), 'b');
});

test('browser store: another "tab" hears a save and a removal over BroadcastChannel, not its own', async () => {
  const storage = new FakeStorage();
  const tabA = new BrowserTokenStore({ storage, key: `k${Math.random()}` });
  const tabB = new BrowserTokenStore({ storage, key: tabA.key });
  const seenA = [];
  const seenB = [];
  const offA = tabA.watch((t) => seenA.push(t));
  const got = [];
  const offB = tabB.watch((t) => {
    seenB.push(t);
    got.shift()?.();
  });
  const next = () => new Promise((r) => got.push(r));
  let n = next();
  tabA.save('tok');
  await n;
  assert.equal(storage.getItem(tabA.key), 'tok');
  n = next();
  tabA.remove();
  await n;
  assert.deepEqual(seenB, ['tok', null]);
  assert.deepEqual(seenA, [], 'a tab does not hear itself');
  offA();
  offB();
});

test('browser store without localStorage keeps the token in memory, and learns others\' changes', async () => {
  const key = `m${Math.random()}`;
  const a = new BrowserTokenStore({ key });
  const b = new BrowserTokenStore({ key });
  let off;
  const heard = new Promise((r) => {
    off = b.watch(r);
  });
  a.save('t1');
  assert.equal(await heard, 't1');
  off();
  assert.equal(b.load(), 't1');
});

test('messages: ping, frames, batches; malformed input ignored', () => {
  assert.deepEqual(parseMessage(''), { kind: 'ping' });
  assert.deepEqual(parseMessage('{"rid":1}'), { kind: 'frames', frames: [{ rid: 1 }] });
  assert.equal(parseMessage('[{"event":"a"},{"event":"b"},3,null]').frames.length, 2);
  for (const bad of ['{', 'null', '42', new Uint8Array(2)]) assert.deepEqual(parseMessage(bad).frames, []);
});

test('claims of a JWT, decoded not verified', () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.deepEqual(decodeClaims(`${b64({ alg: 'HS256' })}.${b64({ sub: 'ådä' })}.sig`), { sub: 'ådä' });
  assert.equal(decodeClaims('nope'), null);
  assert.equal(decodeClaims(null), null);
  assert.equal(decodeClaims('a.!!!.c'), null);
});
