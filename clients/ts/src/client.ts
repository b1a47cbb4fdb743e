/**
 * The direct client: one WebSocket, kept open by itself.
 *
 * It opens the socket, sends `#handshake` with the stored token, answers
 * pings and closes with 4000 when none comes within the handshake's
 * `pingTimeout`, reconnects on the schedule of {@link Backoff} honouring the
 * server's hints, resubscribes every channel from its last position
 * (`recover`), and re-authenticates from the {@link TokenStore}, which it
 * also watches so that a login, logout or renewal in another tab applies
 * here at once. Requests made while the socket is down wait (their timeout
 * running) and go out after the next handshake; requests in flight when it
 * drops fail with {@link BadConnectionError}.
 * @module
 */

import type {
  Client,
  ClientEvents,
  ConnectionState,
  HistoryOptions,
  HistoryPage,
  InvokeHandler,
  Presence,
  PresenceStats,
  PublishOptions,
  RequestOptions,
} from './api.js';
import { Backoff, DEFAULT_RECONNECT, hintFromClose, parseRetryAfterHeader, type ReconnectOptions, type RetryHint } from './backoff.js';
import { Channels, type Channel } from './channels.js';
import { Emitter } from './emitter.js';
import { BadConnectionError, HeraldError, RemoteError, toErrorObject } from './errors.js';
import { Requests } from './requests.js';
import { RESERVED, decodeClaims, encode, parseMessage, type Frame } from './protocol.js';
import { Subscription, type PresenceEvent, type SubscribeOptions } from './subscription.js';
import { defaultTokenStore, type TokenStore } from './tokens.js';
import { openSocket, type Opened, type SocketLike, type WebSocketConstructor } from './transport.js';

/** Options of {@link HeraldClient}. */
export interface ClientOptions {
  /** The endpoint, e.g. `ws://127.0.0.1:8000/socketcluster/`. */
  url: string;
  /** Where the token lives (default: localStorage + BroadcastChannel in browsers, memory elsewhere). */
  tokenStore?: TokenStore;
  /** The reconnect schedule. */
  reconnect?: ReconnectOptions;
  /** Default timeout of requests, ms (default 10000). */
  ackTimeout?: number;
  /** Give up an attempt whose handshake has not completed after this many ms (default 10000). */
  connectTimeout?: number;
  /** Requests kept while the socket is down, beyond which they fail at once (default 1000). */
  maxQueued?: number;
  /** Connect at once (default true); else on {@link HeraldClient.connect}. */
  autoConnect?: boolean;
  /** A WebSocket constructor to use instead of the global one or `ws`. */
  WebSocket?: WebSocketConstructor;
}

const OPEN = 1;

/** The direct client. */
export class HeraldClient implements Client {
  readonly #url: string;
  readonly #store: TokenStore;
  readonly #ackTimeout: number;
  readonly #connectTimeout: number;
  readonly #ctor: WebSocketConstructor | undefined;
  readonly #backoff: Backoff;
  readonly #events = new Emitter<ClientEvents>();
  readonly #receivers = new Emitter<Record<string, unknown>>();
  readonly #handlers = new Map<string, InvokeHandler>();
  readonly #channels = new Channels();
  readonly #requests: Requests;
  #state: ConnectionState = 'closed';
  #socket: SocketLike | null = null;
  #opened: Opened | null = null;
  #attempt = 0;
  #cid = 0;
  #id: string | null = null;
  #token: string | null = null;
  #authenticated = false;
  #pingTimeout = 0;
  #watchdog: ReturnType<typeof setTimeout> | null = null;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #unwatch: (() => void) | null = null;
  #closed = false;

  constructor(options: ClientOptions) {
    this.#url = options.url;
    this.#store = options.tokenStore ?? defaultTokenStore();
    this.#ackTimeout = options.ackTimeout ?? 10000;
    this.#connectTimeout = options.connectTimeout ?? 10000;
    this.#requests = new Requests(options.maxQueued ?? 1000);
    this.#ctor = options.WebSocket;
    this.#backoff = new Backoff({ ...DEFAULT_RECONNECT, ...options.reconnect });
    this.#channels.onGap = (gap) => this.#events.emit('gap', gap);
    this.#unwatch = this.#store.watch?.((t) => this.#tokenChanged(t)) ?? null;
    if (options.autoConnect ?? true) this.connect();
  }

  get state(): ConnectionState {
    return this.#state;
  }
  get id(): string | null {
    return this.#id;
  }
  get isAuthenticated(): boolean {
    return this.#authenticated;
  }
  get authToken(): string | null {
    return this.#token;
  }
  get claims(): Record<string, unknown> | null {
    return this.#authenticated ? decodeClaims(this.#token) : null;
  }

  on<K extends keyof ClientEvents>(event: K, listener: (v: ClientEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  ready(): Promise<void> {
    if (this.#state === 'open') return Promise.resolve();
    if (this.#closed) return Promise.reject(new BadConnectionError('the client is closed'));
    return new Promise((resolve, reject) => {
      const offs = [
        this.#events.on('connect', () => {
          offs.forEach((f) => f());
          resolve();
        }),
        this.#events.on('state', (s) => {
          if (s !== 'closed') return;
          offs.forEach((f) => f());
          reject(new BadConnectionError('the client is closed'));
        }),
      ];
    });
  }

  /** Opens the connection (done by the constructor unless `autoConnect: false`). */
  connect(): void {
    if (this.#closed || this.#socket || this.#state === 'connecting') return;
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    void this.#open();
  }

  subscribe<T = unknown>(channel: string, options: SubscribeOptions = {}): Subscription<T> {
    const sub = new Subscription<T>(channel, (s) => this.#release(s as Subscription<unknown>), options.buffer);
    if (this.#closed) {
      sub._fail(new BadConnectionError('the client is closed'));
      return sub;
    }
    const { channel: c, created } = this.#channels.add(sub as Subscription<unknown>, options.since ?? null);
    if (created && this.#state === 'open') this.#sendSubscribe(c);
    return sub;
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<void> {
    const frame = { event: '#publish', data: { channel, data } };
    if (options.ack === false) {
      this.#send(frame);
      return;
    }
    await this.#request(frame, options.timeout, `publish on ${channel}`);
  }

  invoke<R = unknown>(procedure: string, data?: unknown, options: RequestOptions = {}): Promise<R> {
    return this.#request({ event: procedure, data }, options.timeout, `invoke ${procedure}`) as Promise<R>;
  }

  transmit(event: string, data?: unknown): void {
    this.#send({ event, data });
  }

  handle(procedure: string, handler: InvokeHandler): () => void {
    this.#handlers.set(procedure, handler);
    return () => {
      if (this.#handlers.get(procedure) === handler) this.#handlers.delete(procedure);
    };
  }

  receive(event: string, listener: (data: unknown) => void): () => void {
    return this.#receivers.on(event, listener);
  }

  async authenticate(token: string): Promise<boolean> {
    this.#token = token;
    await this.#store.save(token);
    if (this.#state !== 'open') {
      await this.ready();
      return this.#authenticated;
    }
    return this.#sendAuthenticate(token);
  }

  async deauthenticate(): Promise<void> {
    this.#dropToken(true);
    await this.#store.remove();
  }

  async history<T = unknown>(channel: string, options: HistoryOptions = {}): Promise<HistoryPage<T>> {
    const data: Record<string, unknown> = { channel };
    if (options.limit !== undefined) data.limit = options.limit;
    if (options.since) data.since = options.since;
    return (await this.#request({ event: '#herald/history', data }, options.timeout, `history of ${channel}`)) as HistoryPage<T>;
  }

  async presence(channel: string, options: RequestOptions = {}): Promise<Presence> {
    const r = (await this.#request({ event: '#herald/presence', data: { channel } }, options.timeout, `presence of ${channel}`)) as { clients?: Presence };
    return r?.clients ?? {};
  }

  presenceStats(channel: string, options: RequestOptions = {}): Promise<PresenceStats> {
    return this.#request({ event: '#herald/presenceStats', data: { channel } }, options.timeout, `presence stats of ${channel}`) as Promise<PresenceStats>;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#unwatch?.();
    const socket = this.#socket;
    this.#detach();
    try {
      socket?.close(1000, 'client closed');
    } catch {
      // Already closing.
    }
    this.#failPending(true, 'the client was closed');
    this.#channels.endAll();
    this.#setState('closed');
  }

  // ---- the connection ----

  async #open(): Promise<void> {
    this.#setState('connecting');
    const attempt = ++this.#attempt;
    let opened: Opened;
    try {
      opened = await openSocket(this.#url, this.#ctor);
    } catch (e) {
      this.#events.emit('error', new HeraldError(String(e instanceof Error ? e.message : e)));
      this.#scheduleReconnect({ kind: 'backoff' });
      return;
    }
    if (this.#closed || attempt !== this.#attempt) {
      opened.socket.close(1000);
      return;
    }
    const socket = opened.socket;
    this.#socket = socket;
    this.#opened = opened;
    this.#arm(this.#connectTimeout);
    socket.onopen = () => void this.#handshake(socket);
    socket.onmessage = (ev) => {
      if (socket === this.#socket) this.#onMessage(ev.data);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (socket === this.#socket) this.#onClose(ev.code, ev.reason ?? '');
    };
  }

  async #handshake(socket: SocketLike): Promise<void> {
    let token: string | null = null;
    try {
      token = await this.#store.load();
    } catch {
      token = null;
    }
    if (socket !== this.#socket) return;
    this.#token = token;
    const cid = ++this.#cid;
    // No timer of its own: the connect watchdog (#arm) bounds the handshake.
    this.#requests.track(cid, 'handshake', null, true, '', {
      resolve: (data) => this.#onHandshake(data),
      reject: (e: unknown) => {
        if (!(e instanceof RemoteError)) return;
        this.#events.emit('error', e);
        try {
          socket.close(4008, 'handshake refused');
        } catch {
          // Closed already.
        }
      },
    });
    socket.send(encode({ event: '#handshake', data: token ? { authToken: token } : {}, cid }));
  }

  #onHandshake(data: unknown): void {
    const d = (data ?? {}) as { id?: unknown; pingTimeout?: unknown; isAuthenticated?: unknown; authError?: unknown };
    this.#id = typeof d.id === 'string' ? d.id : null;
    this.#pingTimeout = typeof d.pingTimeout === 'number' && d.pingTimeout > 0 ? d.pingTimeout : 30000;
    this.#authenticated = d.isAuthenticated === true;
    if (d.authError) this.#events.emit('error', new RemoteError(d.authError));
    this.#backoff.reset();
    this.#arm(this.#pingTimeout);
    this.#setState('open');
    // Resubscribe first, then what waited.
    for (const c of this.#channels.all()) this.#sendSubscribe(c);
    for (const text of this.#requests.drain()) this.#socket?.send(text);
    this.#events.emit('connect', { id: this.#id ?? '', isAuthenticated: this.#authenticated });
    if (this.#authenticated && this.#token) {
      this.#events.emit('authenticate', { token: this.#token, claims: decodeClaims(this.#token) });
    }
  }

  #onMessage(raw: unknown): void {
    this.#arm(this.#state === 'open' ? this.#pingTimeout : this.#connectTimeout);
    const msg = parseMessage(raw);
    if (msg.kind === 'ping') {
      this.#socket?.send('');
      return;
    }
    for (const frame of msg.frames) this.#onFrame(frame);
  }

  #onFrame(f: Frame): void {
    if (typeof f.rid === 'number') {
      this.#requests.settle(f.rid, f.data, f.error);
      return;
    }
    if (typeof f.event !== 'string') return;
    switch (f.event) {
      case '#publish':
        this.#channels.publication(f.data);
        return;
      case '#setAuthToken': {
        const token = (f.data as { token?: unknown } | null)?.token;
        if (typeof token === 'string') this.#setToken(token);
        return;
      }
      case '#removeAuthToken':
        this.#dropToken(false);
        void Promise.resolve(this.#store.remove()).catch(() => {});
        return;
      case '#kickOut': {
        const d = f.data as { channel?: unknown; message?: unknown } | null;
        if (d && typeof d.channel === 'string') {
          this.#channels.kicked(d.channel, d.message);
          this.#events.emit('kickOut', { channel: d.channel, message: d.message });
        }
        return;
      }
      case '#herald/join':
      case '#herald/leave': {
        const e = presenceEvent(f.data);
        if (!e) return;
        const kind = f.event === '#herald/join' ? 'join' : 'leave';
        this.#channels.presence(kind, e);
        this.#events.emit(kind, e);
        return;
      }
      case '#herald/unrecoverable':
        this.#channels.unrecoverable(f.data);
        return;
    }
    if (RESERVED.has(f.event)) return;
    if (typeof f.cid === 'number') void this.#answer(f.event, f.data, f.cid);
    else this.#receivers.emit(f.event, f.data);
  }

  async #answer(event: string, data: unknown, cid: number): Promise<void> {
    const socket = this.#socket;
    const handler = this.#handlers.get(event);
    let reply: Frame;
    if (!handler) {
      reply = { rid: cid, error: { name: 'NoSuchProcedureError', message: `no handler for ${event} on this client` } };
    } else {
      try {
        reply = { rid: cid, data: await handler(data) };
      } catch (e) {
        reply = { rid: cid, error: toErrorObject(e) };
      }
    }
    if (socket === this.#socket && socket?.readyState === OPEN) socket.send(encode(reply));
  }

  #onClose(code: number, reason: string): void {
    const refusal = this.#opened?.refusal() ?? null;
    this.#detach();
    this.#channels.disconnected();
    this.#failPending(false, `the connection closed (${code}${reason ? ` ${reason}` : ''})`);
    // The token is kept for the next handshake: a lost connection is no
    // logout, so no `deauthenticate` here (it would log out the other tabs).
    this.#authenticated = false;
    this.#events.emit('disconnect', { code, reason });
    if (this.#closed) return;
    let hint: RetryHint = hintFromClose(code, reason);
    if (refusal && refusal.status === 503) {
      const ms = parseRetryAfterHeader(refusal.retryAfter);
      hint = ms === null ? { kind: 'backoff' } : { kind: 'after', ms };
    }
    this.#scheduleReconnect(hint);
  }

  #scheduleReconnect(hint: RetryHint): void {
    if (this.#closed) return;
    const delay = this.#backoff.policy.enabled ? this.#backoff.delayFor(hint) : null;
    if (delay === null) {
      this.#closed = true;
      this.#unwatch?.();
      this.#failPending(true, 'the connection closed and the client does not reconnect');
      this.#channels.endAll();
      this.#setState('closed');
      return;
    }
    this.#setState('reconnecting');
    this.#events.emit('reconnecting', { delay, attempt: this.#backoff.failures });
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.connect();
    }, delay);
  }

  #detach(): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = null;
    const s = this.#socket;
    if (s) {
      s.onopen = null;
      s.onmessage = null;
      s.onclose = null;
      s.onerror = null;
    }
    this.#socket = null;
    this.#opened = null;
    this.#id = null;
  }

  /** No message for `ms`: the connection is dead (4000), reconnect. */
  #arm(ms: number): void {
    if (this.#watchdog) clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(() => {
      const s = this.#socket;
      if (!s) return;
      try {
        s.close(4000, 'no ping from the server');
      } catch {
        // Closed already.
      }
      // Do not wait for the close handshake of a dead peer.
      this.#onClose(4000, 'no ping from the server');
    }, ms);
  }

  #setState(s: ConnectionState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#events.emit('state', s);
  }

  // ---- requests ----

  #send(frame: Frame): void {
    if (this.#closed) return;
    const text = encode(frame);
    if (this.#state === 'open' && this.#socket?.readyState === OPEN) this.#socket.send(text);
    else this.#requests.queue(text);
  }

  #request(frame: Frame, timeout: number | undefined, what: string): Promise<unknown> {
    if (this.#closed) return Promise.reject(new BadConnectionError(`${what}: the client is closed`));
    const open = this.#state === 'open' && this.#socket?.readyState === OPEN;
    if (!open && this.#requests.full) {
      return Promise.reject(new BadConnectionError(`${what}: not connected and ${this.#requests.maxQueued} requests wait already`));
    }
    const cid = ++this.#cid;
    const text = encode({ ...frame, cid });
    const reply = this.#requests.add(cid, what, timeout ?? this.#ackTimeout, open, text);
    if (open) this.#socket?.send(text);
    return reply;
  }

  #failPending(all: boolean, why: string): void {
    this.#requests.fail(all, why);
  }

  // ---- channels ----

  #sendSubscribe(c: Channel): void {
    const socket = this.#socket;
    if (!socket) return;
    const cid = ++this.#cid;
    c.status = 'pending';
    c.cid = cid;
    const data = this.#channels.subscribeData(c);
    // No reply in time: the connection is unwell; the next reconnect resubscribes.
    const text = encode({ event: '#subscribe', data, cid });
    this.#requests.track(cid, `subscribe to ${c.name}`, this.#ackTimeout, true, text, {
      onTimeout: () => {},
      resolve: (reply) => {
        if (this.#channels.get(c.name) === c && c.cid === cid) this.#channels.subscribed(c, reply);
      },
      reject: (e: unknown) => {
        if (this.#channels.get(c.name) !== c || c.cid !== cid) return;
        if (e instanceof RemoteError && e.name === 'BrokerError') {
          // The broker failed for now: try again on the reconnect schedule.
          c.status = 'unsubscribed';
          setTimeout(() => {
            if (this.#channels.get(c.name) === c && c.status === 'unsubscribed' && this.#state === 'open') this.#sendSubscribe(c);
          }, this.#backoff.policy.initialDelay);
          return;
        }
        if (e instanceof BadConnectionError) return;
        this.#channels.refused(c, e instanceof HeraldError ? e : new HeraldError(String(e)));
      },
    });
    socket.send(text);
  }

  #release(sub: Subscription<unknown>): void {
    const c = this.#channels.remove(sub);
    if (c && c.status !== 'unsubscribed' && this.#state === 'open') {
      this.#request({ event: '#unsubscribe', data: c.name }, undefined, `unsubscribe ${c.name}`).catch(() => {});
    }
  }

  // ---- tokens ----

  async #sendAuthenticate(token: string): Promise<boolean> {
    const r = (await this.#request({ event: '#authenticate', data: token }, undefined, 'authenticate')) as {
      isAuthenticated?: unknown;
      authError?: unknown;
    } | null;
    if (this.#token !== token) return this.#authenticated;
    const ok = r?.isAuthenticated === true;
    const was = this.#authenticated;
    this.#authenticated = ok;
    if (ok) this.#events.emit('authenticate', { token, claims: decodeClaims(token) });
    else if (was) this.#events.emit('deauthenticate', undefined);
    if (r?.authError) this.#events.emit('error', new RemoteError(r.authError));
    return ok;
  }

  #setToken(token: string): void {
    const changed = this.#token !== token || !this.#authenticated;
    this.#token = token;
    this.#authenticated = true;
    void Promise.resolve(this.#store.save(token)).catch(() => {});
    if (changed) this.#events.emit('authenticate', { token, claims: decodeClaims(token) });
  }

  /** Forgets the token here; `tell` sends `#removeAuthToken` to the server. */
  #dropToken(tell: boolean): void {
    const had = this.#token !== null || this.#authenticated;
    this.#token = null;
    this.#authenticated = false;
    if (tell && this.#state === 'open') this.#send({ event: '#removeAuthToken' });
    if (had) this.#events.emit('deauthenticate', undefined);
  }

  /** Another tab changed the stored token. */
  #tokenChanged(token: string | null): void {
    if (this.#closed || token === this.#token) return;
    if (token === null) {
      this.#dropToken(true);
      return;
    }
    this.#token = token;
    if (this.#state === 'open') this.#sendAuthenticate(token).catch((e: unknown) => this.#events.emit('error', e instanceof HeraldError ? e : new HeraldError(String(e))));
  }
}

function presenceEvent(data: unknown): PresenceEvent | null {
  const d = data as { channel?: unknown; client?: unknown; user?: unknown } | null;
  if (!d || typeof d.channel !== 'string' || typeof d.client !== 'string') return null;
  return { channel: d.channel, client: d.client, user: typeof d.user === 'string' ? d.user : null };
}
