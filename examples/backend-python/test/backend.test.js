// End to end: app.py (the Flask backend) against a real `herald serve`, driven
// by the official socketcluster-client. scripts/example-backend.sh runs it
// (it makes the venv first); by hand:
//   node --test examples/backend-python/test/
// with HERALD_BIN (default target/debug/herald) and BACKEND_PYTHON (default
// examples/backend-python/.venv/bin/python). BACKEND_TEST_DEBUG=1 shows both
// processes' output.
'use strict';

const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {spawn, execFileSync} = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const EXAMPLE = path.resolve(__dirname, '..');
const REPO = path.resolve(EXAMPLE, '..', '..');
// The official client, from the compatibility suite's npm project (npm ci there).
const socketClusterClient = require(path.join(REPO, 'tests', 'node', 'node_modules', 'socketcluster-client'));

const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO, 'target', 'debug', 'herald');
const PYTHON = process.env.BACKEND_PYTHON || path.join(EXAMPLE, '.venv', 'bin', 'python');
const DEBUG = !!process.env.BACKEND_TEST_DEBUG;
const WAIT_MS = 5000;
// Tokens live 6 s in this test, so that the refresh hook runs while it does.
const TOKEN_TTL = 6;

// The whole file is bounded: a hang fails it instead of blocking CI.
const watchdog = setTimeout(() => {
  process.stderr.write('backend test: over 55 s, giving up\n');
  killAll();
  process.exit(1);
}, 55000);
watchdog.unref();

const children = new Set();
function killAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
process.on('exit', killAll);

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Spawns a child whose output is kept (and shown with BACKEND_TEST_DEBUG). */
function start(name, file, args, env) {
  const proc = spawn(file, args, {env, stdio: ['ignore', 'pipe', 'pipe']});
  children.add(proc);
  proc.output = '';
  proc.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({code, signal})));
  for (const stream of [proc.stdout, proc.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      if (proc.output.length < 256 * 1024) proc.output += chunk;
      if (DEBUG) process.stderr.write(`[${name}] ${chunk}`);
    });
  }
  return proc;
}

async function stop(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const r = await Promise.race([proc.exited, new Promise((res) => setTimeout(res, 3000, 'timeout'))]);
  if (r === 'timeout') {
    proc.kill('SIGKILL');
    await proc.exited;
  }
}

/** A free loopback port (for the backend, whose URL herald.toml must name before it starts). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once `regex` matches the process's output; rejects if it exits first. */
function waitForOutput(proc, regex, what) {
  return withTimeout(new Promise((resolve, reject) => {
    const check = () => {
      const m = regex.exec(proc.output);
      if (m) {
        proc.stdout.off('data', check);
        resolve(m);
      }
    };
    proc.stdout.on('data', check);
    check();
    proc.exited.then(({code, signal}) => reject(new Error(
      `${what} exited (code ${code}, signal ${signal}) before it was ready:\n${proc.output}`)));
  }), 15000, what);
}

let herald;
let backend;
let heraldPort;
let backendUrl;
let tmpDir;
const sockets = [];

before(async () => {
  assert.ok(fs.existsSync(HERALD_BIN), `no ${HERALD_BIN}: cargo build -p herald-cli first, or set HERALD_BIN`);
  assert.ok(fs.existsSync(PYTHON), `no ${PYTHON}: scripts/example-backend.sh makes the venv, or set BACKEND_PYTHON`);

  // The config as shipped, with the backend on a free port instead of 5000.
  const backendPort = await freePort();
  backendUrl = `http://127.0.0.1:${backendPort}`;
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-backend-python-'));
  const config = path.join(tmpDir, 'herald.toml');
  const shipped = fs.readFileSync(path.join(EXAMPLE, 'herald.toml'), 'utf8');
  assert.match(shipped, /127\.0\.0\.1:5000/);
  fs.writeFileSync(config, shipped.replaceAll('127.0.0.1:5000', `127.0.0.1:${backendPort}`));

  const env = {...process.env};
  for (const k of Object.keys(env)) if (k.startsWith('HERALD_') && k !== 'HERALD_BIN') delete env[k];
  herald = start('herald', HERALD_BIN, ['serve', '--config', config, '--listen', '127.0.0.1:0'], env);
  heraldPort = Number((await waitForOutput(herald, /herald listening on ws:\/\/127\.0\.0\.1:(\d+)\//, 'herald serve'))[1]);

  backend = start('backend', PYTHON, [path.join(EXAMPLE, 'app.py')], {
    ...env,
    BACKEND_PORT: String(backendPort),
    BACKEND_HERALD_CONFIG: config,
    BACKEND_HERALD_URL: `http://127.0.0.1:${heraldPort}`,
    BACKEND_TOKEN_TTL: String(TOKEN_TTL),
    PYTHONUNBUFFERED: '1',
  });
  // Ready when it answers: poll its health route (each attempt bounded).
  await withTimeout((async () => {
    for (;;) {
      if (backend.exitCode !== null) throw new Error(`the backend exited:\n${backend.output}`);
      try {
        const r = await fetch(`${backendUrl}/health`, {signal: AbortSignal.timeout(1000)});
        if (r.ok) return;
      } catch (e) { /* not listening yet */ }
      await new Promise((res) => setTimeout(res, 50));
    }
  })(), 15000, 'the backend to answer /health');
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.all([stop(backend), stop(herald)]);
  if (tmpDir) fs.rmSync(tmpDir, {recursive: true, force: true});
  clearTimeout(watchdog);
});

async function post(route, body, token) {
  const headers = {'Content-Type': 'application/json'};
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(`${backendUrl}${route}`, {
    method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(WAIT_MS),
  });
  return {status: r.status, body: await r.json()};
}

async function login(name, password) {
  const r = await post('/login', {name, password});
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.token;
}

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** An authEngine holding `token`, as a browser's localStorage would. */
function memoryAuth(token) {
  const store = {token};
  return {
    store,
    saveToken: async (_name, value) => { store.token = value; return value; },
    removeToken: async () => { const old = store.token; store.token = null; return old; },
    loadToken: async () => store.token,
  };
}

function client(token, opts = {}) {
  const socket = socketClusterClient.create({
    hostname: '127.0.0.1', port: heraldPort, authEngine: memoryAuth(token), ackTimeout: WAIT_MS, ...opts,
  });
  sockets.push(socket);
  return socket;
}

/** Buffers a stream (channel, receiver, listener) from now on; next(pred) takes the first match. */
function collect(stream) {
  const items = [];
  let wake = () => {};
  (async () => {
    for await (const item of stream) {
      items.push(item);
      wake();
    }
  })();
  return {
    items,
    next(pred, what) {
      return withTimeout(new Promise((resolve) => {
        const look = () => {
          const i = items.findIndex(pred);
          if (i >= 0) resolve(items.splice(i, 1)[0]);
          else wake = look;
        };
        look();
      }), WAIT_MS, what);
    },
  };
}

async function subscribed(socket, channel) {
  const ch = socket.subscribe(channel);
  const messages = collect(ch);
  const outcome = await withTimeout(Promise.race([
    ch.listener('subscribe').once().then(() => null),
    ch.listener('subscribeFail').once().then((ev) => ev.error),
  ]), WAIT_MS, `the subscribe to ${channel}`);
  if (outcome) {
    socket.unsubscribe(channel);
    throw outcome;
  }
  return messages;
}

function hookSignature(secret, ts, body) {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');
}

test('the shipped herald.toml passes herald check-config', () => {
  const out = execFileSync(HERALD_BIN, ['check-config', path.join(EXAMPLE, 'herald.toml')], {encoding: 'utf8'});
  assert.match(out, /^ok: /);
});

test('the backend refuses hook requests Herald did not sign', async () => {
  const body = JSON.stringify({hook: 'connect', node: 'n', socket: {id: 'x', remote_addr: null, user: null, claims: null},
    query: '', headers: {}, auth_error: null});
  const send = (headers) => fetch(`${backendUrl}/herald/connect`, {
    method: 'POST', headers: {'Content-Type': 'application/json', ...headers}, body, signal: AbortSignal.timeout(WAIT_MS),
  });
  const now = String(Math.floor(Date.now() / 1000));
  const secret = /secret = "([^"]+)"/.exec(fs.readFileSync(path.join(EXAMPLE, 'herald.toml'), 'utf8')
    .split('[hooks]')[1])[1];

  assert.equal((await send({})).status, 401, 'unsigned');
  assert.equal((await send({'X-Herald-Timestamp': now, 'X-Herald-Signature': hookSignature('not the secret', now, body)}))
    .status, 401, 'signed with another secret');
  assert.equal((await send({'X-Herald-Timestamp': now, 'X-Herald-Signature': hookSignature(secret, now, body + ' ')}))
    .status, 401, 'signature of another body');
  const old = String(Math.floor(Date.now() / 1000) - 3600);
  assert.equal((await send({'X-Herald-Timestamp': old, 'X-Herald-Signature': hookSignature(secret, old, body)}))
    .status, 401, 'an hour old (a replay)');
  const good = await send({'X-Herald-Timestamp': now, 'X-Herald-Signature': hookSignature(secret, now, body)});
  assert.equal(good.status, 200, 'signed with the secret');
  assert.deepEqual(await good.json(), {});
});

test('login issues a Herald token; a wrong password gets none', async () => {
  assert.equal((await post('/login', {name: 'ada', password: 'wrong'})).status, 401);
  assert.equal((await post('/login', {name: 'nobody', password: 'x'})).status, 401);
  const claims = claimsOf(await login('ada', 'lovelace'));
  assert.equal(claims.sub, 'ada');
  assert.deepEqual(claims.channels, ['user:ada']);
  assert.deepEqual(claims.info, {name: 'Ada Lovelace'});
  assert.ok(claims.exp > Date.now() / 1000);
});

let ada;
let adaToken;
let bob;
let bobToken;
let bobLobby;

test('a socket connects with its token: authenticated, seen by the connect hook, its personal channel granted', async () => {
  adaToken = await login('ada', 'lovelace');
  ada = client(adaToken);
  const grants = collect(ada.receiver('#herald/subscribed'));
  const status = await withTimeout(ada.listener('connect').once(), WAIT_MS, 'ada to connect');
  assert.equal(status.isAuthenticated, true);
  assert.equal(ada.authState, 'authenticated');
  assert.equal(ada.authToken.sub, 'ada');
  const seen = await (await fetch(`${backendUrl}/connected`)).json();
  assert.ok(seen.ada.includes(ada.id), `the connect hook saw ${ada.id}: ${JSON.stringify(seen)}`);

  // user:ada comes from the token's channels claim: the server subscribed
  // the socket and says so; the client's own subscribe is answered at once,
  // and the backend's publication there arrives.
  assert.deepEqual(await grants.next(() => true, 'the #herald/subscribed push'), {channel: 'user:ada'});
  const personal = await subscribed(ada, 'user:ada');
  const r = await post('/announce', {channel: 'user:ada', text: 'your parcel is here'}, ada.signedAuthToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body, {result: {}});
  const got = await personal.next(() => true, 'the publication on user:ada');
  assert.deepEqual(got, {text: 'your parcel is here', user: 'announcer'});
});

test('the backend publishes through the API to every subscriber; only admins may', async () => {
  bobToken = await login('bob', 'builder');
  bob = client(bobToken);
  await withTimeout(bob.listener('connect').once(), WAIT_MS, 'bob to connect');
  bobLobby = await subscribed(bob, 'chat:lobby');

  const r = await post('/announce', {text: 'welcome, everyone'}, ada.signedAuthToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(typeof r.body.result.offset, 'number', 'chat: has history: the publication has an offset');
  const got = await bobLobby.next((m) => m.user === 'announcer', 'the announcement on chat:lobby');
  assert.equal(got.text, 'welcome, everyone');

  assert.equal((await post('/announce', {text: 'me too'}, bobToken)).status, 403);
  assert.equal((await post('/announce', {text: 'me too'})).status, 401);
});

test('the subscribe hook refuses what the backend forbids, with its named errors', async () => {
  await assert.rejects(subscribed(bob, 'user:ada'), {name: 'ForbiddenChannelError', message: "user:ada is ada's personal channel"});
  await assert.rejects(subscribed(bob, 'team:core'), {name: 'NotAMemberError'});
  await assert.rejects(subscribed(bob, 'chat:nowhere'), {name: 'NoSuchRoomError'});
  await subscribed(ada, 'team:core');
});

test('the publish hook rewrites what subscribers get, and refuses bad messages', async () => {
  await ada.invokePublish('chat:lobby', {text: 'what the darn heck', user: 'mallory', extra: 1});
  const got = await bobLobby.next((m) => m.user === 'ada', "ada's message on chat:lobby");
  assert.equal(got.text, 'what the **** ****');
  assert.equal(typeof got.at, 'number');
  assert.deepEqual(Object.keys(got).sort(), ['at', 'text', 'user']);

  await assert.rejects(ada.invokePublish('chat:lobby', {text: ''}), {name: 'InvalidMessageError'});
  await assert.rejects(ada.invokePublish('chat:lobby', 'not an object'), {name: 'InvalidMessageError'});
});

test('an RPC no Rust handler serves is answered by the backend', async () => {
  assert.deepEqual(await ada.invoke('greet', null), {text: 'Hello, Ada Lovelace!'});
  assert.deepEqual(await bob.invoke('rooms', {}), ['lobby', 'random']);
  await assert.rejects(ada.invoke('launch', {}), {name: 'NoSuchProcedureError', message: 'no procedure launch'});
});

test('the refresh hook renews a token before it expires, on the same connection', async () => {
  const firstExp = claimsOf(adaToken).exp;
  const id = ada.id;
  await withTimeout((async () => {
    for await (const {authToken} of ada.listener('authenticate')) {
      if (authToken.exp > firstExp) return;
    }
  })(), (TOKEN_TTL + 2) * 1000, 'a refreshed token');
  assert.equal(ada.id, id, 'no reconnect');
  assert.equal(ada.authState, 'authenticated');
  assert.deepEqual(ada.authToken.channels, ['user:ada']);
});

test('the backend sends an event to a user, then bans them: disconnected, and refused by the connect hook', async () => {
  const notices = collect(bob.receiver('notice'));
  const r = await post('/notify', {user: 'bob', text: 'please behave'}, ada.signedAuthToken);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(await notices.next(() => true, 'the notice'), {text: 'please behave'});

  bobToken = bob.signedAuthToken;
  assert.ok(claimsOf(bobToken).exp > Date.now() / 1000 + 1, 'bob holds a live token');
  const closed = withTimeout(bob.listener('disconnect').once(), WAIT_MS, "bob's disconnect");
  assert.equal((await post('/ban', {user: 'bob'}, ada.signedAuthToken)).status, 200);
  const {code, reason} = await closed;
  assert.equal(code, 4104);
  assert.equal(reason, 'banned');
  bob.disconnect();

  // Bob's token (the one the client holds, refreshed meanwhile) still
  // verifies; the connect hook is what keeps him out.
  const again = client(bobToken, {autoReconnect: false});
  const errors = collect(again.listener('error'));
  const closes = collect(again.listener('close'));
  const err = await errors.next(({error}) => error.name === 'BannedError', 'the connect refusal');
  assert.equal(err.error.message, 'bob is banned');
  const {code: refused} = await closes.next(() => true, 'the refused socket to close');
  assert.equal(refused, 4008);
  assert.equal((await post('/login', {name: 'bob', password: 'builder'})).status, 403);
});
