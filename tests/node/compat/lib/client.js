// Test helper: official socketcluster-client@20 sockets, event collectors with
// bounded waits (no fixed sleeps), and a raw `ws` WebSocket for frame-level checks.
'use strict';

const socketClusterClient = require('socketcluster-client');
const WebSocket = require('ws');

const DEFAULT_WAIT_MS = 5000;

// COMPAT_TRACE=1: log every frame sent/received by official clients and raw
// sockets to stderr (node --test shows it for failing files), to compare what
// Herald sends with what socketcluster-server sends.
const TRACE = !!process.env.COMPAT_TRACE;
function trace(dir, who, frame) {
  if (!TRACE) return;
  let text = typeof frame === 'string' ? frame : `<binary ${frame.length} bytes>`;
  if (text === '') text = "'' (ping/pong)";
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${who} ${dir} ${text}\n`);
}
const traceIds = new WeakMap();
let nextTraceId = 1;
function traceId(obj, prefix) {
  if (!traceIds.has(obj)) traceIds.set(obj, `${prefix}#${nextTraceId++}`);
  return traceIds.get(obj);
}
if (TRACE) {
  const AGTransport = require('socketcluster-client/lib/transport');
  const origSend = AGTransport.prototype.send;
  AGTransport.prototype.send = function (data) {
    trace('->', traceId(this, 'client'), data);
    return origSend.call(this, data);
  };
  const origOnMessage = AGTransport.prototype._onMessage;
  AGTransport.prototype._onMessage = function (message) {
    trace('<-', traceId(this, 'client'), message);
    return origOnMessage.call(this, message);
  };
}

/**
 * Race `promise` against a timer; rejects with a descriptive error on timeout.
 * ms == null / Infinity: no timeout (only for waits that lose a race anyway).
 */
function withTimeout(promise, ms, label) {
  if (ms == null || ms === Infinity) return promise;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Start consuming an async stream (socket listener, receiver, channel...) right
 * now, buffering everything, so nothing emitted later is missed.
 *   waitFor(pred, ms, label) -> earliest not-yet-taken item matching pred (taken now)
 *   next(ms, label)          -> earliest not-yet-taken item
 *   items                    -> everything seen so far
 */
function collect(stream) {
  const items = [];
  const taken = new Set();
  const waiters = new Set();
  const consumer = stream.createConsumer();
  let done = false;

  const check = () => {
    for (const w of waiters) {
      for (let i = 0; i < items.length; i++) {
        if (!taken.has(i) && w.pred(items[i])) {
          waiters.delete(w);
          taken.add(i);
          w.resolve(items[i]);
          break;
        }
      }
    }
  };

  (async () => {
    for (;;) {
      const r = await consumer.next();
      if (r.done) break;
      items.push(r.value);
      check();
    }
    done = true;
  })();

  return {
    items,
    get done() { return done; },
    waitFor(pred, ms = DEFAULT_WAIT_MS, label = 'matching item') {
      let waiter;
      const p = new Promise((resolve) => {
        waiter = {pred, resolve};
        waiters.add(waiter);
        check();
      });
      return withTimeout(p, ms, label).finally(() => waiters.delete(waiter));
    },
    next(ms = DEFAULT_WAIT_MS, label = 'next item') {
      return this.waitFor(() => true, ms, label);
    },
    stop() {
      consumer.return();
    },
  };
}

/** Create an official client (auto-connects). Disconnected after the test. */
function createClient(t, port, extra = {}) {
  const socket = socketClusterClient.create({
    hostname: '127.0.0.1',
    port,
    path: '/socketcluster/',
    ...extra,
  });
  if (t) {
    t.after(() => {
      socket.disconnect();
      socket.killAllListeners();
      socket.killAllChannels();
      socket.killAllReceivers();
      socket.killAllProcedures();
    });
  }
  return socket;
}

/** Wait for the next 'connect' of `socket`; fails fast on connectAbort/close. */
async function waitConnect(socket, ms = DEFAULT_WAIT_MS) {
  const connect = socket.listener('connect').once();
  const abort = socket.listener('connectAbort').once().then((e) => {
    throw new Error(`connectAbort code=${e.code} reason=${e.reason}`);
  });
  const close = socket.listener('close').once().then((e) => {
    throw new Error(`closed while connecting code=${e.code} reason=${e.reason}`);
  });
  return withTimeout(Promise.race([connect, abort, close]), ms, "client 'connect'");
}

/** Create a client and wait for its handshake; resolves {socket, status}. */
async function connectClient(t, port, extra = {}) {
  const socket = createClient(t, port, extra);
  const status = await waitConnect(socket);
  return {socket, status};
}

/** Subscribe and wait for the channel's 'subscribe' (or fail on 'subscribeFail'). */
async function subscribe(socket, channelName, ms = DEFAULT_WAIT_MS) {
  const channel = socket.subscribe(channelName);
  if (socket.isSubscribed(channelName)) return channel;
  const ok = channel.listener('subscribe').once();
  const fail = channel.listener('subscribeFail').once().then(({error}) => {
    throw new Error(`subscribe to ${channelName} failed: ${error && error.name}: ${error && error.message}`);
  });
  await withTimeout(Promise.race([ok, fail]), ms, `subscribe to ${channelName}`);
  return channel;
}

/** Await a promise expected to reject; returns the rejection reason. */
async function rejection(promise, ms, label) {
  const marker = Symbol('resolved');
  const r = await withTimeout(promise.then(() => marker, (err) => ({err})), ms, label);
  if (r === marker) throw new Error(`${label}: expected a rejection, got a resolution`);
  return r.err;
}

// ---------------------------------------------------------------------------
// Raw WebSocket, for frame-level assertions.

class RawSocket {
  constructor(url) {
    this.url = url;
    this.frames = []; // every text frame received, as strings
    this._waiters = new Set();
    this._taken = new Set(); // indexes of frames already returned by waitFrame
    this.answerPings = false;
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
      this.ws.once('unexpected-response', (req, res) => {
        reject(new Error(`unexpected HTTP response ${res.statusCode}`));
      });
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        trace('x ', traceId(this, 'raw'), `close ${code} ${reason.toString()}`);
        resolve({code, reason: reason.toString()});
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      trace('<-', traceId(this, 'raw'), text);
      if (text === '' && this.answerPings && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send('');
      }
      this.frames.push(text);
      this._check();
    });
  }

  _check() {
    for (const w of this._waiters) {
      for (let i = 0; i < this.frames.length; i++) {
        if (!this._taken.has(i) && w.pred(this.frames[i])) {
          this._waiters.delete(w);
          this._taken.add(i);
          w.resolve({frame: this.frames[i], index: i});
          break;
        }
      }
    }
  }

  static async open(t, url, ms = DEFAULT_WAIT_MS) {
    const raw = new RawSocket(url);
    if (t) t.after(() => raw.terminate());
    await withTimeout(raw.opened, ms, `raw WebSocket open ${url}`);
    return raw;
  }

  send(frame) {
    const text = typeof frame === 'string' ? frame : JSON.stringify(frame);
    trace('->', traceId(this, 'raw'), text);
    this.ws.send(text);
  }

  /** Earliest not-yet-taken frame that satisfies pred (then taken); resolves {frame, index}. */
  waitFrame(pred, ms = DEFAULT_WAIT_MS, label = 'frame') {
    let waiter;
    const p = new Promise((resolve) => {
      waiter = {pred, resolve};
      this._waiters.add(waiter);
      this._check();
    });
    return withTimeout(p, ms, label).finally(() => this._waiters.delete(waiter));
  }

  /** Earliest not-yet-taken non-ping frame, parsed as JSON (or the raw string if it is not JSON). */
  async nextMessage(ms = DEFAULT_WAIT_MS, label = 'non-ping frame') {
    const {frame, index} = await this.waitFrame((f) => f !== '', ms, label);
    return {packet: parseMaybe(frame), frame, index};
  }

  /** Invoke-style request; resolves the reply packet {rid, data?, error?}. */
  async request(event, data, cid, ms = DEFAULT_WAIT_MS) {
    const packet = {event, cid};
    if (data !== undefined) packet.data = data;
    this.send(packet);
    const {frame} = await this.waitFrame((f) => {
      const p = parseMaybe(f);
      return p && typeof p === 'object' && p.rid === cid;
    }, ms, `reply rid=${cid} to ${event}`);
    return JSON.parse(frame);
  }

  async handshake(authToken, cid = 1) {
    const data = authToken === undefined ? {} : {authToken};
    return this.request('#handshake', data, cid);
  }

  waitClose(ms = DEFAULT_WAIT_MS) {
    return withTimeout(this.closed, ms, 'WebSocket close');
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  terminate() {
    try { this.ws.terminate(); } catch (e) { /* ignore */ }
  }
}

function parseMaybe(frame) {
  if (typeof frame !== 'string') return frame;
  try {
    return JSON.parse(frame);
  } catch (e) {
    return frame;
  }
}

function namedError(name, message) {
  const err = new Error(message);
  err.name = name;
  return err;
}

let uniq = 0;
/** A channel/user name unique within this test process. */
function unique(prefix) {
  uniq += 1;
  return `${prefix}${process.pid}-${uniq}`;
}

module.exports = {
  socketClusterClient,
  WebSocket,
  withTimeout,
  collect,
  createClient,
  connectClient,
  waitConnect,
  subscribe,
  rejection,
  RawSocket,
  parseMaybe,
  namedError,
  unique,
  DEFAULT_WAIT_MS,
};
