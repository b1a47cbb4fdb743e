/**
 * The demo page of `herald serve --dev` (crates/herald-cli/assets/demo):
 * a small live chat on the `demo:` namespace, built on the client exactly as
 * an app would use it. It shows the connection's state, who is logged in
 * (login over `POST /herald/dev/token`, shared by every tab), presence, and
 * the recovery after a reconnect: messages that arrive between the
 * reconnect and the resubscribe's reply were published while the page was
 * away, and are marked "recovered". Bundled with esbuild by
 * `npm run build:demo`; the bundle is committed and compiled into the binary.
 * @module
 */

import { RemoteError, SharedClient, createClient, type Client, type Subscription } from '../src/index.js';

interface Message {
  user: string;
  text: string;
}

interface Line {
  offset: number;
  user: string;
  text: string;
  recovered: boolean;
}

interface Room {
  sub: Subscription<Message>;
  lines: Map<number, Line>;
  notes: string[];
  unread: number;
  recovering: boolean;
  recovered: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const path = document.querySelector<HTMLMetaElement>('meta[name="herald-path"]')?.content || '/socketcluster/';
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
const wantShared = new URLSearchParams(location.search).get('shared') !== '0';

const client: Client = createClient({
  url,
  shared: wantShared ? { worker: '/herald/dev/worker.js', name: 'herald-demo' } : undefined,
});
$('mode').textContent =
  client instanceof SharedClient ? '(one socket shared by every tab)' : '(one socket per tab)';

// For the browser's console: try `herald.invoke(...)`, `herald.presence('demo:lobby')`.
(globalThis as { herald?: Client }).herald = client;

const rooms = new Map<string, Room>();
let current = 'demo:lobby';
let retryIn: number | null = null;
let wasDisconnected = false;
/** What the resubscribes after the last reconnect recovered. */
let recoveredNotes: string[] = [];

// ---- connection and login ----

function showState(): void {
  const el = $('state');
  const words: Record<string, string> = {
    connecting: 'connecting…',
    open: 'connected',
    reconnecting: retryIn === null ? 'reconnecting…' : `reconnecting in ${Math.ceil(retryIn / 1000)} s`,
    closed: 'closed',
  };
  el.textContent = words[client.state] ?? client.state;
  el.className = client.state;
}

function showUser(): void {
  const sub = client.claims?.sub;
  $('user').textContent = typeof sub === 'string' ? sub : '';
  $<HTMLButtonElement>('logout').disabled = !client.isAuthenticated;
  $<HTMLInputElement>('message').placeholder = client.isAuthenticated ? 'say something' : 'log in to talk';
}

client.on('state', showState);
client.on('reconnecting', ({ delay }) => {
  retryIn = delay;
  showState();
});
client.on('disconnect', () => {
  wasDisconnected = true;
  notice('Connection lost: reconnecting…');
});
client.on('connect', () => {
  retryIn = null;
  // What arrives before each channel's resubscribe reply was sent while away.
  recoveredNotes = [];
  for (const room of rooms.values()) {
    room.recovering = wasDisconnected;
    room.recovered = 0;
  }
  showState();
  showUser();
  void refreshPresence();
});
client.on('authenticate', () => {
  showUser();
  void refreshPresence();
});
client.on('deauthenticate', showUser);
client.on('join', () => void refreshPresence());
client.on('leave', () => void refreshPresence());

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $<HTMLInputElement>('login-name').value.trim();
  if (!name) return;
  void (async () => {
    const r = await fetch('/herald/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    const body = (await r.json()) as { token?: string; error?: string };
    if (!body.token) {
      notice(`Cannot log in: ${body.error ?? r.status}`);
      return;
    }
    await client.authenticate(body.token);
    $<HTMLInputElement>('login-name').value = '';
  })().catch((err: unknown) => notice(`Cannot log in: ${String(err)}`));
});

$('logout').addEventListener('click', () => void client.deauthenticate());

$('drop').addEventListener('click', () => {
  client.invoke('dev.dropMe', { seconds: 3 }).catch(() => {});
});

// ---- channels ----

function notice(text: string): void {
  $('notice').textContent = text;
}

function join(channel: string): Room {
  const existing = rooms.get(channel);
  if (existing) return existing;
  const sub = client.subscribe<Message>(channel);
  const room: Room = { sub, lines: new Map(), notes: [], unread: 0, recovering: false, recovered: 0 };
  rooms.set(channel, room);
  sub.on('subscribed', () => {
    if (!room.recovering) return;
    room.recovering = false;
    if (room.recovered > 0) recoveredNotes.push(`${room.recovered} message${room.recovered === 1 ? '' : 's'} on ${channel}`);
    notice(recoveredNotes.length ? `Reconnected: recovered ${recoveredNotes.join(', ')} sent while away.` : 'Reconnected.');
  });
  sub.on('gap', (gap) => {
    room.notes.push(`Some messages on ${channel} could not be recovered (${gap.cause}).`);
    notice(`Some messages on ${channel} could not be recovered: the server lost its history.`);
    render();
  });
  void (async () => {
    try {
      await sub.ready;
      const page = await client.history<Message>(channel, { limit: 50 });
      for (const p of page.publications) add(room, p.offset, p.data, false);
      render();
    } catch (err) {
      notice(`${channel}: ${String(err)}`);
    }
  })();
  void (async () => {
    for await (const msg of sub) {
      const recovered = room.recovering;
      if (recovered) room.recovered++;
      add(room, msg.offset ?? room.lines.size + 1, msg.data, recovered);
      if (channel !== current) room.unread++;
      render();
    }
  })().catch((err: unknown) => notice(`${channel}: ${String(err)}`));
  return room;
}

function add(room: Room, offset: number, data: Message, recovered: boolean): void {
  if (room.lines.has(offset)) return;
  const user = typeof data?.user === 'string' ? data.user : 'someone';
  const text = typeof data?.text === 'string' ? data.text : JSON.stringify(data);
  room.lines.set(offset, { offset, user, text, recovered });
}

function render(): void {
  const list = $('channels');
  list.replaceChildren(
    ...[...rooms.keys()].map((name) => {
      const li = document.createElement('li');
      li.textContent = name.slice('demo:'.length);
      li.className = name === current ? 'current' : '';
      li.dataset.channel = name;
      const unread = rooms.get(name)?.unread ?? 0;
      if (unread > 0) {
        const badge = document.createElement('span');
        badge.className = 'unread';
        badge.textContent = String(unread);
        li.append(badge);
      }
      li.addEventListener('click', () => select(name));
      return li;
    }),
  );
  const room = rooms.get(current);
  if (!room) return;
  const lines = [...room.lines.values()].sort((a, b) => a.offset - b.offset);
  $('messages').replaceChildren(
    ...lines.map((l) => {
      const li = document.createElement('li');
      const from = document.createElement('span');
      from.className = 'from';
      from.textContent = l.user;
      li.append(from, document.createTextNode(l.text));
      if (l.recovered) li.className = 'recovered';
      return li;
    }),
    ...room.notes.map((n) => {
      const li = document.createElement('li');
      li.className = 'lost';
      li.textContent = n;
      return li;
    }),
  );
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

function select(channel: string): void {
  current = channel;
  const room = join(channel);
  room.unread = 0;
  render();
  void refreshPresence();
}

async function refreshPresence(): Promise<void> {
  const channel = current;
  try {
    const who = await client.presence(channel);
    if (channel !== current) return;
    const users = new Map<string, number>();
    for (const { user } of Object.values(who)) users.set(user ?? 'guest', (users.get(user ?? 'guest') ?? 0) + 1);
    $('presence').replaceChildren(
      ...[...users].map(([user, n]) => {
        const li = document.createElement('li');
        li.textContent = n > 1 ? `${user} (${n} sockets)` : user;
        return li;
      }),
    );
  } catch {
    // Not connected yet: the next connect refreshes.
  }
}

$('channel-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>('channel-name');
  const name = input.value.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, '-');
  if (!name) return;
  input.value = '';
  select(`demo:${name}`);
});

$('send-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $<HTMLInputElement>('message');
  const text = input.value.trim();
  if (!text) return;
  // The server stamps the user from the token (nobody talks under another name).
  client.publish(current, { text }).then(
    () => {
      input.value = '';
    },
    (err: unknown) => notice(err instanceof RemoteError && err.name === 'ForbiddenError' ? 'Log in to talk.' : String(err)),
  );
});

// Joins and leaves refresh the list at once; a login changes the user of
// sockets already subscribed, which no event tells, so it is read again
// every few seconds too.
setInterval(() => {
  if (client.state === 'open') void refreshPresence();
}, 3000);

join('demo:lobby');
join('demo:random');
select('demo:lobby');
showState();
showUser();
